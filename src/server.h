/* server.h — the server object, internal view.
 *
 * wshub_server_t owns the listeners, every connection (a doubly linked
 * list), the loop-wide read buffer, the flush (cork) handle, the resolved
 * public root and the shutdown machinery. Modules reach shared state only
 * through the server pointer each connection carries: no globals.
 */
#ifndef WSHUB_SERVER_H
#define WSHUB_SERVER_H

#include <limits.h>
#include <stdarg.h>

#include "conn.h"
#include "deflate.h"
#include "hub.h"
#include "metrics.h"
#include "wshub.h"

#define WSHUB_MAX_LISTENERS 8
#define WSHUB_READ_BUF (64 * 1024)

struct wshub_server_s {
  uv_loop_t *loop;
  wshub_config_t cfg;

  uv_tcp_t listeners[WSHUB_MAX_LISTENERS];
  int nlisteners;
  int port;

  uv_prepare_t flush; /* corks: flushes dirty connections once a turn */
  uv_timer_t shutdown_timer;
  uv_timer_t accept_timer; /* retries connections not taken for want of
                              memory */
  unsigned accept_paused;  /* bit i: listeners[i] has one waiting */
  wshub_conn_t *conns;     /* all open connections */
  size_t nconns;
  wshub_conn_t *dirty; /* connections with unflushed writes */
  void *wq_pool;       /* spare write-queue arrays (conn.c) */
  size_t wq_pool_bytes;
  wshub_hub_t hub;         /* WebSocket clients and rooms */
  wshub_buf_t *ping;       /* the keep-alive ping frame, shared by everyone */
  wshub_deflate_t deflate; /* zlib streams (permessage-deflate) */
  wshub_map_t per_ip;      /* remote address → open connection count */
  int accept_failing; /* an accept error was logged; quiet until one works */
  int refusing;       /* a 503 refusal was logged; quiet until one is served */

  char root[PATH_MAX]; /* realpath of cfg.public_dir, "" if none */
  size_t root_len;

  char date[40]; /* cached IMF-fixdate for the Date header */
  uint64_t date_sec;

  unsigned works; /* threadpool items in flight (they read root) */
  int closing;
  unsigned open_handles; /* server-level handles not yet closed */
  wshub_close_cb close_cb;

  /* Operations (metrics.c): counters written by this thread only. */
  wshub_counters_t m;
  wshub_server_t *self; /* a one-server group: &self */
  uv_timer_t lag_timer;
  uint64_t lag_last;      /* uv_hrtime() of its last firing */
  unsigned ops_listeners; /* bit i: listeners[i] serves operations only */
  /* TLS (tls.h): the context new TLS connections use, which listeners
   * speak TLS, and the flush's buffer for ciphertext (made with the
   * context). */
  size_t live_conns; /* connections not yet freed (held ones included) */
  wshub_tls_t *tls;
  unsigned tls_listeners; /* bit i: listeners[i] */
  char *tls_scratch;      /* WSHUB_TLS_SCRATCH bytes */

  char readbuf[WSHUB_READ_BUF];
};

#define WSHUB_TLS_SCRATCH (64 * 1024)

/* A connection's memory was freed (conn.c): a closing server that waited
 * for it may go now. */
void wshub_server_conn_freed(wshub_server_t *s);
/* The time now as a log line's timestamp, "2026-12-06T20:13:33.966Z"
 * (UTC, milliseconds); also the program's own lines (main.c). */
#define WSHUB_LOG_TIME_BYTES 40
void wshub_log_time(char out[WSHUB_LOG_TIME_BYTES]);
void wshub_log(wshub_server_t *s, wshub_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with structured fields (a JSON object, stolen; may be NULL):
 * members of the line's object in JSON, " key=value" after the text. */
struct json_t;
void wshub_log_fields(wshub_server_t *s, wshub_log_level_t level,
                      struct json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Bookkeeping called by conn.c. */
void wshub_server_conn_added(wshub_server_t *s, wshub_conn_t *c);
void wshub_server_conn_removed(wshub_server_t *s, wshub_conn_t *c);
void wshub_server_mark_dirty(wshub_server_t *s, wshub_conn_t *c);
/* Threadpool work that uses the server started / ended. The server is not
 * freed while work is in flight. */
void wshub_server_work_begin(wshub_server_t *s);
void wshub_server_work_end(wshub_server_t *s);

/* The keep-alive ping frame (built once; borrowed). */
wshub_buf_t *wshub_server_ping_frame(wshub_server_t *s);

/* The current Date header value (cached per second). */
const char *wshub_server_date(wshub_server_t *s);

#endif
