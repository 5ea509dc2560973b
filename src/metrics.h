/* metrics.h — what a server counts, and the operations endpoints.
 *
 * Each wshub_server_t embeds one wshub_counters_t. Its fields are written
 * only by the server's own loop thread (a relaxed atomic load and store:
 * a plain increment in the generated code, no lock, no read-modify-write
 * instruction) and read by any thread with relaxed atomic loads. Gauges
 * are counted up and down the same way (unsigned wrap-around keeps their
 * sums exact).
 *
 * A wshub_metrics_group_t (public, wshub.h) lists the servers that report
 * together — one per loop thread in the standalone program — under a
 * mutex taken only to join, leave and scrape. A scrape reads the counters
 * of every server of the group, on whichever thread it lands, and sums
 * them (the event-loop lag is reported per thread instead).
 *
 * The endpoints: GET /metrics (Prometheus text exposition format 0.0.4),
 * GET /healthz (liveness: 200 while the loop answers) and GET /readyz
 * (200, or 503 while a server of the group is shutting down or the
 * application's on_ready says no — the chat: its Redis link is down).
 */
#ifndef WSHUB_METRICS_H
#define WSHUB_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "wshub.h"

typedef struct wshub_http_s wshub_http_t;

/* What a connection is used for, for the open-connections gauge. */
enum {
  WSHUB_TR_HTTP = 0, /* requests and responses, keep-alive idle */
  WSHUB_TR_WS,       /* upgraded to WebSocket */
  WSHUB_TR_SSE,      /* an event stream (held, streaming) */
  WSHUB_TR_POLL,     /* a held request (long polling) */
  WSHUB_TR_N
};

/* Why a WebSocket handshake failed (label reason=). */
enum {
  WSHUB_HSF_PATH = 0,   /* 404: no WebSocket endpoint at this path */
  WSHUB_HSF_ORIGIN,     /* 403: cross-site origin not allowed */
  WSHUB_HSF_VERSION,    /* 426: Sec-WebSocket-Version not 13 */
  WSHUB_HSF_KEY,        /* 400: Sec-WebSocket-Key missing or bad */
  WSHUB_HSF_REQUEST,    /* 400: method, version, Host, Upgrade/Connection */
  WSHUB_HSF_EXTENSIONS, /* 400: malformed Sec-WebSocket-Extensions */
  WSHUB_HSF_REFUSED,    /* the application's on_open refused */
  WSHUB_HSF_INTERNAL,   /* out of memory and the like */
  WSHUB_HSF_N
};

/* Why a connection was refused at accept (503; label reason=). */
enum {
  WSHUB_REFUSE_MAX_CONN = 0,
  WSHUB_REFUSE_PER_IP,
  WSHUB_REFUSE_NOMEM,
  WSHUB_REFUSE_N
};

/* Close codes 1000-1015 by value; everything else in the last slot. */
#define WSHUB_CLOSE_SLOTS 17

typedef _Atomic uint64_t wshub_metric_t;

typedef struct {
  wshub_metric_t open[WSHUB_TR_N]; /* gauge */
  wshub_metric_t accepted;
  wshub_metric_t refused[WSHUB_REFUSE_N];
  wshub_metric_t responses[6]; /* by status class: 1xx .. 5xx (index 1-5) */
  wshub_metric_t upgrades;
  wshub_metric_t hs_failed[WSHUB_HSF_N];
  wshub_metric_t bytes_in, bytes_out; /* socket level */
  wshub_metric_t ws_msgs_in;          /* WebSocket data messages received */
  wshub_metric_t deliveries;          /* frames queued to clients */
  wshub_metric_t slow;                /* slow-consumer disconnections */
  wshub_metric_t close_rx[WSHUB_CLOSE_SLOTS], close_tx[WSHUB_CLOSE_SLOTS];
  wshub_metric_t queued;   /* gauge: outbound bytes not yet written */
  wshub_metric_t rooms;    /* gauge: rooms of this server's hub */
  wshub_metric_t lag_ns;   /* gauge: the lag timer's last lateness */
  wshub_metric_t draining; /* 1 once wshub_close() was called */
} wshub_counters_t;

/* Only ever called by the counters' own thread. */
static inline void wshub_metric_add(wshub_metric_t *m, uint64_t n) {
  atomic_store_explicit(m, atomic_load_explicit(m, memory_order_relaxed) + n,
                        memory_order_relaxed);
}
static inline void wshub_metric_inc(wshub_metric_t *m) {
  wshub_metric_add(m, 1);
}
static inline void wshub_metric_sub(wshub_metric_t *m, uint64_t n) {
  wshub_metric_add(m, (uint64_t)0 - n);
}
static inline void wshub_metric_set(wshub_metric_t *m, uint64_t v) {
  atomic_store_explicit(m, v, memory_order_relaxed);
}
static inline unsigned wshub_close_slot(unsigned code) {
  return code >= 1000 && code <= 1015 ? code - 1000 : WSHUB_CLOSE_SLOTS - 1;
}

/* Joins the server's group (if any): UV_ENOMEM or 0. */
int wshub_metrics_join(wshub_server_t *s);
/* Starts the lag timer, one of the server's own handles (closed with
 * them). */
void wshub_metrics_timer_start(wshub_server_t *s);
/* Leaves the group; called just before the server is freed. */
void wshub_metrics_stop(wshub_server_t *s);

/* A connection changes use (counts it out of its old kind, into `kind`). */
void wshub_metrics_conn_kind(wshub_server_t *s, uint8_t *kind, uint8_t to);

/* Answers GET /metrics, /healthz or /readyz if the request is one of them
 * and they are served on this connection; returns 1 if it answered. */
int wshub_metrics_route(wshub_http_t *h, const wshub_request_t *req, int ops);

#endif
