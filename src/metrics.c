/* metrics.c — server counters summed over a group, the Prometheus text
 * exposition, the lag timer, and /metrics, /healthz, /readyz (see
 * metrics.h). */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "http.h"
#include "server.h"

#define METRICS_LAG_MS 500

struct wshub_metrics_group_s {
  uv_mutex_t lock; /* the list below; held while a scrape reads it */
  wshub_server_t **servers;
  size_t n, cap;
};

struct wshub_metrics_out_s {
  char *p;
  size_t len, cap;
  int failed;
};

wshub_metrics_group_t *wshub_metrics_group_new(void) {
  wshub_metrics_group_t *g = calloc(1, sizeof(*g));
  if (g == NULL)
    return NULL;
  if (uv_mutex_init(&g->lock) != 0) {
    free(g);
    return NULL;
  }
  return g;
}

void wshub_metrics_group_free(wshub_metrics_group_t *g) {
  if (g == NULL)
    return;
  uv_mutex_destroy(&g->lock);
  free(g->servers);
  free(g);
}

int wshub_metrics_printf(wshub_metrics_out_t *o, const char *fmt, ...) {
  if (o->failed)
    return UV_ENOMEM;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      o->failed = 1;
      return UV_EINVAL;
    }
    if ((size_t)n < o->cap - o->len) {
      o->len += (size_t)n;
      return 0;
    }
    size_t cap = o->cap ? o->cap * 2 : 8192;
    while (cap < o->len + (size_t)n + 1)
      cap *= 2;
    char *p = realloc(o->p, cap);
    if (p == NULL) {
      o->failed = 1;
      return UV_ENOMEM;
    }
    o->p = p;
    o->cap = cap;
  }
}

/* The lag timer: a repeating timer's lateness, measured on the monotonic
 * clock between two firings (how long the loop was too busy to run it). */
static void metrics_on_lag(uv_timer_t *t) {
  wshub_server_t *s = t->data;
  uint64_t now = uv_hrtime();
  uint64_t due = s->lag_last + (uint64_t)METRICS_LAG_MS * 1000000;
  wshub_metric_set(&s->m.lag_ns, now > due ? now - due : 0);
  s->lag_last = now;
}

int wshub_metrics_join(wshub_server_t *s) {
  wshub_metrics_group_t *g = s->cfg.metrics_group;
  if (g == NULL)
    return 0;
  uv_mutex_lock(&g->lock);
  int r = 0;
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 8;
    wshub_server_t **v = realloc(g->servers, cap * sizeof(*v));
    if (v == NULL)
      r = UV_ENOMEM;
    else
      g->servers = v, g->cap = cap;
  }
  if (r == 0)
    g->servers[g->n++] = s;
  uv_mutex_unlock(&g->lock);
  return r;
}

void wshub_metrics_timer_start(wshub_server_t *s) {
  uv_timer_init(s->loop, &s->lag_timer);
  s->lag_timer.data = s;
  uv_unref((uv_handle_t *)&s->lag_timer);
  s->lag_last = uv_hrtime();
  uv_timer_start(&s->lag_timer, metrics_on_lag, METRICS_LAG_MS, METRICS_LAG_MS);
}

void wshub_metrics_stop(wshub_server_t *s) {
  wshub_metrics_group_t *g = s->cfg.metrics_group;
  if (g == NULL)
    return;
  uv_mutex_lock(&g->lock);
  for (size_t i = 0; i < g->n; i++)
    if (g->servers[i] == s) {
      g->servers[i] = g->servers[--g->n];
      break;
    }
  uv_mutex_unlock(&g->lock);
}

void wshub_metrics_conn_kind(wshub_server_t *s, uint8_t *kind, uint8_t to) {
  if (*kind == to)
    return;
  wshub_metric_sub(&s->m.open[*kind], 1);
  wshub_metric_inc(&s->m.open[to]);
  *kind = to;
}

static uint64_t metrics_get(const wshub_metric_t *m) {
  return atomic_load_explicit(m, memory_order_relaxed);
}

/* The servers to report: the group's (its lock held until
 * metrics_unlock), else s alone. */
static wshub_server_t *const *metrics_lock(wshub_server_t *s, size_t *n) {
  wshub_metrics_group_t *g = s->cfg.metrics_group;
  if (g == NULL) {
    *n = 1;
    return &s->self;
  }
  uv_mutex_lock(&g->lock);
  *n = g->n;
  return g->servers;
}

static void metrics_unlock(wshub_server_t *s) {
  if (s->cfg.metrics_group != NULL)
    uv_mutex_unlock(&s->cfg.metrics_group->lock);
}

/* The sum of one counter (at byte offset off in wshub_counters_t). */
static uint64_t metrics_sum(wshub_server_t *const *v, size_t n, size_t off) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += metrics_get(
        (const wshub_metric_t *)(const void *)((const char *)&v[i]->m + off));
  return sum;
}

#define SUM(field) metrics_sum(v, n, offsetof(wshub_counters_t, field))

static void metrics_head(wshub_metrics_out_t *o, const char *name,
                         const char *type, const char *help) {
  wshub_metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                       type);
}

static void metrics_one(wshub_metrics_out_t *o, const char *name,
                        const char *type, const char *help, uint64_t value) {
  metrics_head(o, name, type, help);
  wshub_metrics_printf(o, "%s %" PRIu64 "\n", name, value);
}

/* Process basics from /proc and getrusage. */
static void metrics_process(wshub_metrics_out_t *o) {
  long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size, rss;
  if (f != NULL) {
    if (fscanf(f, "%lu %lu", &size, &rss) == 2 && page > 0) {
      metrics_one(o, "process_resident_memory_bytes", "gauge",
                  "Resident memory size in bytes.",
                  (uint64_t)rss * (uint64_t)page);
      metrics_one(o, "process_virtual_memory_bytes", "gauge",
                  "Virtual memory size in bytes.",
                  (uint64_t)size * (uint64_t)page);
    }
    fclose(f);
  }
  /* Start time: field 22 of /proc/self/stat (clock ticks after boot) plus
   * btime of /proc/stat. The command name (field 2) may hold spaces: skip
   * to its closing parenthesis. */
  unsigned long long start = 0, btime = 0;
  char buf[1024];
  f = fopen("/proc/self/stat", "r");
  if (f != NULL) {
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    buf[got] = '\0';
    fclose(f);
    char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 22; field++)
      p = strchr(p + 1, ' ');
    if (p != NULL)
      start = strtoull(p + 1, NULL, 10);
  }
  f = fopen("/proc/stat", "r");
  if (f != NULL) {
    while (fgets(buf, sizeof(buf), f) != NULL)
      if (sscanf(buf, "btime %llu", &btime) == 1)
        break;
    fclose(f);
  }
  if (btime > 0 && ticks > 0) {
    metrics_head(o, "process_start_time_seconds", "gauge",
                 "Start time of the process since the Unix epoch in seconds.");
    wshub_metrics_printf(o, "process_start_time_seconds %.2f\n",
                         (double)btime + (double)start / (double)ticks);
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    metrics_head(o, "process_cpu_seconds_total", "counter",
                 "Total user and system CPU time spent in seconds.");
    wshub_metrics_printf(
        o, "process_cpu_seconds_total %.3f\n",
        (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  }
}

static const char *const metrics_transports[WSHUB_TR_N] = {"http", "websocket",
                                                           "sse", "poll"};
static const char *const metrics_hsf[WSHUB_HSF_N] = {
    "path",    "origin",     "version", "key",
    "request", "extensions", "refused", "internal"};
static const char *const metrics_refused[WSHUB_REFUSE_N] = {
    "max_connections", "max_per_ip", "out_of_memory"};

/* A family with one label whose values are names[0..count), its series
 * the counters of an array starting at byte offset `first`. */
static void metrics_labeled(wshub_metrics_out_t *o, wshub_server_t *const *v,
                            size_t n, const char *name, const char *type,
                            const char *help, const char *label,
                            const char *const *names, int count, size_t first) {
  metrics_head(o, name, type, help);
  for (int i = 0; i < count; i++)
    wshub_metrics_printf(
        o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, names[i],
        metrics_sum(v, n, first + (size_t)i * sizeof(wshub_metric_t)));
}

static void metrics_close_codes(wshub_metrics_out_t *o,
                                wshub_server_t *const *v, size_t n) {
  metrics_head(o, "wshub_websocket_close_frames_total", "counter",
               "WebSocket close frames by direction and code (1005: a close "
               "frame without a code; other: codes outside 1000-1015).");
  for (int dir = 0; dir < 2; dir++)
    for (unsigned i = 0; i < WSHUB_CLOSE_SLOTS; i++) {
      size_t off = dir == 0 ? offsetof(wshub_counters_t, close_rx[i])
                            : offsetof(wshub_counters_t, close_tx[i]);
      uint64_t x = metrics_sum(v, n, off);
      if (x == 0)
        continue;
      char code[8];
      if (i == WSHUB_CLOSE_SLOTS - 1)
        snprintf(code, sizeof(code), "other");
      else
        snprintf(code, sizeof(code), "%u", 1000 + i);
      wshub_metrics_printf(o,
                           "wshub_websocket_close_frames_total{direction=\"%s\""
                           ",code=\"%s\"} %" PRIu64 "\n",
                           dir == 0 ? "received" : "sent", code, x);
    }
}

int wshub_server_ready(wshub_server_t *s) {
  size_t n;
  wshub_server_t *const *v = metrics_lock(s, &n);
  int ready = SUM(draining) == 0;
  metrics_unlock(s);
  if (ready && s->cfg.on_ready != NULL)
    ready = s->cfg.on_ready(s->cfg.user) != 0;
  return ready;
}

int wshub_metrics_write(wshub_server_t *s, char **text, size_t *len) {
  wshub_metrics_out_t out = {0};
  wshub_metrics_out_t *o = &out;
  int ready = wshub_server_ready(s);
  size_t n;
  wshub_server_t *const *v = metrics_lock(s, &n);
  metrics_labeled(o, v, n, "wshub_connections", "gauge",
                  "Open connections by transport.", "transport",
                  metrics_transports, WSHUB_TR_N,
                  offsetof(wshub_counters_t, open));
  metrics_one(o, "wshub_connections_accepted_total", "counter",
              "TCP connections accepted.", SUM(accepted));
  metrics_labeled(o, v, n, "wshub_connections_refused_total", "counter",
                  "Connections refused with 503 at accept, by reason.",
                  "reason", metrics_refused, WSHUB_REFUSE_N,
                  offsetof(wshub_counters_t, refused));
  metrics_head(o, "wshub_http_responses_total", "counter",
               "HTTP responses by status class (101 upgrades included).");
  for (int i = 1; i <= 5; i++)
    wshub_metrics_printf(
        o, "wshub_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n", i,
        metrics_sum(v, n, offsetof(wshub_counters_t, responses[i])));
  metrics_one(o, "wshub_websocket_upgrades_total", "counter",
              "WebSocket handshakes completed (101 sent).", SUM(upgrades));
  metrics_labeled(o, v, n, "wshub_websocket_handshake_failures_total",
                  "counter", "WebSocket upgrade requests refused, by reason.",
                  "reason", metrics_hsf, WSHUB_HSF_N,
                  offsetof(wshub_counters_t, hs_failed));
  metrics_one(o, "wshub_received_bytes_total", "counter",
              "Bytes read from client sockets.", SUM(bytes_in));
  metrics_one(o, "wshub_sent_bytes_total", "counter",
              "Bytes written to client sockets.", SUM(bytes_out));
  metrics_one(o, "wshub_websocket_messages_received_total", "counter",
              "WebSocket data messages received (text and binary).",
              SUM(ws_msgs_in));
  metrics_one(o, "wshub_deliveries_total", "counter",
              "Messages queued to clients (WebSocket frames, event-stream "
              "and poll deliveries).",
              SUM(deliveries));
  metrics_one(o, "wshub_slow_consumer_closes_total", "counter",
              "Clients disconnected for not reading (max-backlog).", SUM(slow));
  metrics_close_codes(o, v, n);
  metrics_one(o, "wshub_queued_bytes", "gauge",
              "Outbound bytes queued and not yet taken by the sockets.",
              SUM(queued));
  metrics_head(o, "wshub_hub_rooms", "gauge",
               "Rooms with members on each thread's server.");
  for (size_t i = 0; i < n; i++)
    wshub_metrics_printf(o, "wshub_hub_rooms{thread=\"%u\"} %" PRIu64 "\n",
                         v[i]->cfg.metrics_thread, metrics_get(&v[i]->m.rooms));
  metrics_head(o, "wshub_event_loop_lag_seconds", "gauge",
               "How late each thread's 500 ms repeating timer last fired.");
  for (size_t i = 0; i < n; i++)
    wshub_metrics_printf(
        o, "wshub_event_loop_lag_seconds{thread=\"%u\"} %.6f\n",
        v[i]->cfg.metrics_thread, (double)metrics_get(&v[i]->m.lag_ns) / 1e9);
  metrics_one(o, "wshub_threads", "gauge",
              "Servers (event-loop threads) reporting.", n);
  metrics_unlock(s);
  metrics_one(o, "wshub_ready", "gauge", "1 when /readyz answers 200.",
              (uint64_t)ready);
  if (s->cfg.on_metrics != NULL)
    s->cfg.on_metrics(o, s->cfg.user);
  metrics_process(o);
  if (o->failed) {
    free(o->p);
    return UV_ENOMEM;
  }
  *text = o->p;
  *len = o->len;
  return 0;
}

/* The path of a request-target, without its query. */
static int metrics_path_is(const wshub_request_t *req, const char *path) {
  size_t len = 0;
  while (len < req->target_len && req->target[len] != '?')
    len++;
  return len == strlen(path) && memcmp(req->target, path, len) == 0;
}

static void metrics_plain(wshub_http_t *h, int status, const char *body) {
  wshub_respond(h, status, "text/plain; charset=utf-8",
                "Cache-Control: no-store\r\n", body, strlen(body));
}

int wshub_metrics_route(wshub_http_t *h, const wshub_request_t *req, int ops) {
  wshub_server_t *s = wshub_http_conn(h)->server;
  /* Operations listeners serve these paths only; the main ones serve them
   * unless the server has operations listeners. */
  if (!ops && s->ops_listeners != 0)
    return 0;
  int metrics = s->cfg.metrics && metrics_path_is(req, "/metrics");
  int live = s->cfg.health && metrics_path_is(req, "/healthz");
  int ready = s->cfg.health && metrics_path_is(req, "/readyz");
  if (!metrics && !live && !ready) {
    if (!ops)
      return 0;
    wshub_respond(h, 404, "text/plain; charset=utf-8", NULL, "404 Not Found\n",
                  14);
    return 1;
  }
  if (req->method != 1 && req->method != 2) { /* GET, HEAD */
    wshub_respond(h, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                  "405 Method Not Allowed\n", 23);
    return 1;
  }
  if (live) {
    metrics_plain(h, 200, "ok\n");
  } else if (ready) {
    if (wshub_server_ready(s))
      metrics_plain(h, 200, "ready\n");
    else
      metrics_plain(h, 503, "not ready\n");
  } else {
    char *text;
    size_t len;
    if (wshub_metrics_write(s, &text, &len) != 0) {
      metrics_plain(h, 503, "out of memory\n");
      return 1;
    }
    wshub_respond(h, 200, "text/plain; version=0.0.4; charset=utf-8",
                  "Cache-Control: no-store\r\n", text, len);
    free(text);
  }
  return 1;
}
