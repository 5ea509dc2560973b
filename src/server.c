/* server.c — listeners, accepting, the connection list, the per-turn flush
 * that corks writes, logging, and graceful shutdown (see server.h). */
#include "server.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame.h"
#include "http.h"
#include "tls.h"

void wshub_config_init(wshub_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->log_level = WSHUB_LOG_WARN;
  cfg->max_header_bytes = 16384;
  cfg->max_headers = 100;
  cfg->max_body = 1024 * 1024;
  cfg->header_timeout_ms = 10000;
  cfg->keepalive_timeout_ms = 15000;
  cfg->max_message = 1024 * 1024;
  cfg->ping_interval_ms = 30000;
  cfg->close_timeout_ms = 5000;
  cfg->max_backlog = 8 * 1024 * 1024;
  cfg->shutdown_timeout_ms = 10000;
  cfg->id_first = 1;
  cfg->id_step = 1;
  cfg->deflate = 1;
  cfg->deflate_threshold = 64;
  cfg->deflate_level = 6;
}

const char *wshub_strerror(int err) {
  return uv_strerror(err);
}

/* One log line: to log_cb as text, else to stderr as text or JSON. */
void wshub_log_time(char out[WSHUB_LOG_TIME_BYTES]) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  time_t secs = (time_t)tv.tv_sec;
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(out, WSHUB_LOG_TIME_BYTES, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, WSHUB_LOG_TIME_BYTES - n, ".%03dZ",
           (int)(tv.tv_usec / 1000));
}

static void server_emit(wshub_server_t *s, wshub_log_level_t level,
                        json_t *fields, const char *msg) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  char text[1536];
  size_t tl = (size_t)snprintf(text, sizeof(text), "%s", msg);
  const char *key;
  json_t *value;
  if (!s->cfg.log_json || s->cfg.log_cb != NULL)
    json_object_foreach(fields, key, value) {
      if (tl >= sizeof(text))
        break;
      char *v = json_is_string(value)
                    ? NULL
                    : json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT |
                                            JSON_REAL_PRECISION(6));
      tl += (size_t)snprintf(text + tl, sizeof(text) - tl, " %s=%s", key,
                             v ? v : json_string_value(value));
      free(v);
    }
  if (s->cfg.log_cb != NULL) {
    s->cfg.log_cb(s->cfg.log_user, level, text);
    return;
  }
  char ts[WSHUB_LOG_TIME_BYTES];
  wshub_log_time(ts);
  if (!s->cfg.log_json) {
    fprintf(stderr, "%s %s %s\n", ts, names[level], text);
    return;
  }
  /* One object per line: ts, level, msg, then the fields. */
  json_t *o =
      json_pack("{s:s, s:s, s:s}", "ts", ts, "level", names[level], "msg", msg);
  if (o != NULL && fields != NULL)
    json_object_update(o, fields);
  char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                     JSON_REAL_PRECISION(6))
                 : NULL;
  if (line != NULL)
    fprintf(stderr, "%s\n", line);
  else /* out of memory: still say it */
    fprintf(stderr, "{\"level\":\"%s\",\"msg\":\"(out of memory)\"}\n",
            names[level]);
  free(line);
  json_decref(o);
}

void wshub_log(wshub_server_t *s, wshub_log_level_t level, const char *fmt,
               ...) {
  if (level > s->cfg.log_level)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  server_emit(s, level, NULL, msg);
}

void wshub_log_fields(wshub_server_t *s, wshub_log_level_t level,
                      json_t *fields, const char *fmt, ...) {
  if (level > s->cfg.log_level) {
    json_decref(fields);
    return;
  }
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  server_emit(s, level, fields, msg);
  json_decref(fields);
}

wshub_buf_t *wshub_server_ping_frame(wshub_server_t *s) {
  if (s->ping == NULL)
    s->ping = wshub_frame_build(WSHUB_OP_PING, "wshub", 5);
  return s->ping;
}

const char *wshub_server_date(wshub_server_t *s) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  if ((uint64_t)tv.tv_sec != s->date_sec || s->date[0] == '\0') {
    time_t secs = (time_t)tv.tv_sec;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->date_sec = (uint64_t)tv.tv_sec;
  }
  return s->date;
}

static void server_on_flush(uv_prepare_t *p) {
  wshub_server_t *s = p->data;
  while (s->dirty != NULL) {
    wshub_conn_t *c = s->dirty;
    s->dirty = c->dirty_next;
    c->dirty_next = NULL;
    c->dirty = 0;
    wshub_conn_flush(c);
    wshub_conn_release(c);
  }
}

void wshub_server_mark_dirty(wshub_server_t *s, wshub_conn_t *c) {
  if (c->dirty)
    return;
  c->dirty = 1;
  wshub_conn_hold(c);
  c->dirty_next = s->dirty;
  s->dirty = c;
}

static void server_maybe_done(wshub_server_t *s);

/* Open connections per remote address, for max_per_ip. */
typedef struct {
  char ip[56];
  size_t n;
} server_ip_t;

/* Counts c against its address; returns that address's count. */
static size_t server_ip_add(wshub_server_t *s, wshub_conn_t *c) {
  char ip[56];
  snprintf(ip, sizeof(ip), "%s", c->peer);
  char *colon = strrchr(ip, ':');
  if (colon != NULL)
    *colon = '\0';
  server_ip_t *e = wshub_map_get(&s->per_ip, ip);
  if (e == NULL) {
    e = calloc(1, sizeof(*e));
    if (e == NULL)
      return 0;
    memcpy(e->ip, ip, sizeof(ip));
    if (wshub_map_put(&s->per_ip, e->ip, e) != 0) {
      free(e);
      return 0;
    }
  }
  c->ip_count = e;
  return ++e->n;
}

static void server_ip_remove(wshub_server_t *s, wshub_conn_t *c) {
  server_ip_t *e = c->ip_count;
  c->ip_count = NULL;
  if (e != NULL && --e->n == 0) {
    wshub_map_del(&s->per_ip, e->ip);
    free(e);
  }
}

void wshub_server_conn_added(wshub_server_t *s, wshub_conn_t *c) {
  c->prev = NULL;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
}

void wshub_server_conn_removed(wshub_server_t *s, wshub_conn_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->nconns--;
  wshub_metric_sub(&s->m.open[c->kind], 1);
  server_ip_remove(s, c);
  if (s->closing)
    server_maybe_done(s);
}

void wshub_server_work_begin(wshub_server_t *s) {
  s->works++;
}

void wshub_server_work_end(wshub_server_t *s) {
  s->works--;
  if (s->closing)
    server_maybe_done(s);
}

size_t wshub_server_connections(const wshub_server_t *s) {
  return s->nconns;
}

int wshub_server_new(uv_loop_t *loop, const wshub_config_t *cfg,
                     wshub_server_t **out) {
  wshub_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return UV_ENOMEM;
  s->loop = loop;
  s->cfg = *cfg;
  /* A client can always be sent one whole message (an echo, a history). */
  if (s->cfg.max_backlog > 0 && s->cfg.max_backlog < s->cfg.max_message + 16)
    s->cfg.max_backlog = s->cfg.max_message + 16;
  wshub_hub_init(&s->hub);
  s->self = s;
  if (cfg->public_dir != NULL) {
    if (realpath(cfg->public_dir, s->root) == NULL) {
      int err = -errno;
      wshub_hub_free(&s->hub);
      wshub_map_free(&s->per_ip);
      free(s);
      return err;
    }
    s->root_len = strlen(s->root);
  }
  if (cfg->tls_cert != NULL || cfg->tls_key != NULL) {
    int err = wshub_tls_reload(s); /* logs why it failed */
    if (err != 0) {
      free(s->tls_scratch);
      wshub_hub_free(&s->hub);
      wshub_map_free(&s->per_ip);
      free(s);
      return err;
    }
  }
  int joined = wshub_metrics_join(s);
  if (joined != 0) {
    if (s->tls != NULL)
      wshub_tls_free(s->tls);
    free(s->tls_scratch);
    wshub_hub_free(&s->hub);
    wshub_map_free(&s->per_ip);
    free(s);
    return joined;
  }
  uv_prepare_init(loop, &s->flush);
  s->flush.data = s;
  uv_prepare_start(&s->flush, server_on_flush);
  uv_unref((uv_handle_t *)&s->flush);
  uv_timer_init(loop, &s->shutdown_timer);
  s->shutdown_timer.data = s;
  uv_unref((uv_handle_t *)&s->shutdown_timer);
  uv_timer_init(loop, &s->accept_timer);
  s->accept_timer.data = s;
  uv_unref((uv_handle_t *)&s->accept_timer);
  wshub_deflate_init(&s->deflate, loop, s->cfg.deflate_level,
                     s->cfg.deflate_threshold);
  s->deflate.timer.data = s;
  wshub_metrics_timer_start(s);
  s->open_handles = 5; /* with the lag timer */
  *out = s;
  return 0;
}

/* 1 if listener is one of the server's operations listeners. */
static int server_is_ops(const wshub_server_t *s, uv_stream_t *listener) {
  for (int i = 0; i < s->nlisteners; i++)
    if ((uv_stream_t *)&s->listeners[i] == listener)
      return (s->ops_listeners >> i) & 1;
  return 0;
}

/* ---- TLS contexts ---- */

int wshub_server_set_tls(wshub_server_t *s, wshub_tls_t *tls) {
  if (tls == NULL)
    return UV_EINVAL;
  if (s->tls_scratch == NULL &&
      (s->tls_scratch = malloc(WSHUB_TLS_SCRATCH)) == NULL)
    return UV_ENOMEM;
  wshub_tls_ref(tls);
  if (s->tls != NULL)
    wshub_tls_free(s->tls);
  s->tls = tls;
  return 0;
}

int wshub_tls_reload(wshub_server_t *s) {
  char err[1024];
  wshub_tls_t *tls;
  int r =
      wshub_tls_load(s->cfg.tls_cert, s->cfg.tls_key, &tls, err, sizeof(err));
  if (r != 0) {
    wshub_log(s, WSHUB_LOG_ERROR, "TLS: %s%s", err,
              s->tls != NULL ? " (keeping the current certificate)" : "");
    return r;
  }
  r = wshub_server_set_tls(s, tls);
  wshub_tls_free(tls);
  if (r == 0)
    wshub_log(s, WSHUB_LOG_INFO, "TLS: certificate %s loaded", s->cfg.tls_cert);
  return r;
}

static int server_accept(wshub_server_t *s, uv_stream_t *listener, int tls) {
  int ops = server_is_ops(s, listener);
  if (s->closing && !ops)
    return UV_ECANCELED;
  if (tls && s->tls == NULL)
    return UV_EINVAL;
  wshub_conn_t *c;
  int r = wshub_conn_accept(s, listener, &c);
  if (r != 0)
    return r;
  c->ops = (uint8_t)ops;
  c->kind = WSHUB_TR_HTTP;
  wshub_metric_inc(&s->m.open[WSHUB_TR_HTTP]);
  wshub_metric_inc(&s->m.accepted);
  s->accept_failing = 0;
  wshub_log(s, WSHUB_LOG_DEBUG, "%s connected%s", c->peer, tls ? " (TLS)" : "");
  size_t from_ip = server_ip_add(s, c);
  const char *full = NULL;
  int why = WSHUB_REFUSE_NOMEM;
  if (from_ip == 0 || (tls && wshub_conn_use_tls(c, s->tls) != 0))
    full = "out of memory";
  else if (ops) /* operations connections are not limited */
    full = wshub_http_attach(c) != 0 ? "out of memory" : NULL;
  else if (s->cfg.max_connections > 0 && s->nconns > s->cfg.max_connections)
    full = "server full: too many connections", why = WSHUB_REFUSE_MAX_CONN;
  else if (s->cfg.max_per_ip > 0 && from_ip > s->cfg.max_per_ip)
    full = "too many connections from your address", why = WSHUB_REFUSE_PER_IP;
  else if (wshub_http_attach(c) != 0)
    full = "out of memory";
  if (full != NULL) {
    wshub_metric_inc(&s->m.refused[why]);
    /* Once per episode at warn level; the rest only at debug. */
    wshub_log(s, s->refusing ? WSHUB_LOG_DEBUG : WSHUB_LOG_WARN,
              "%s refused %s: %s%s", c->peer, tls ? "(closed)" : "with 503",
              full,
              s->refusing ? "" : " (further refusals logged at debug level)");
    s->refusing = 1;
    if (tls) {
      /* A 503 would first cost a handshake: just close. */
      wshub_conn_close(c);
      return 0;
    }
    wshub_buf_t *b = wshub_buf_printf(
        "HTTP/1.1 503 Service Unavailable\r\nServer: wshub/" WSHUB_VERSION
        "\r\nDate: %s\r\nConnection: close\r\nRetry-After: 5\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
        "\r\n503 Service Unavailable\n%s\n",
        wshub_server_date(s), strlen(full) + 25, full);
    if (b != NULL)
      wshub_conn_send_buf(c, b);
    wshub_buf_unref(b);
    wshub_conn_end(c);
    return 0;
  }
  s->refusing = 0;
  return 0;
}

int wshub_accept(wshub_server_t *s, uv_stream_t *listener) {
  return server_accept(s, listener, 0);
}

int wshub_accept_tls(wshub_server_t *s, uv_stream_t *listener) {
  return server_accept(s, listener, 1);
}

static void server_on_connection(uv_stream_t *listener, int status);

/* Connections that could not be taken for want of memory wait in the
 * backlog, and libuv stops watching their listener until one is: try
 * again. */
static void server_on_accept_retry(uv_timer_t *t) {
  wshub_server_t *s = t->data;
  unsigned paused = s->accept_paused;
  s->accept_paused = 0;
  for (int i = 0; i < s->nlisteners && !s->closing; i++)
    if ((paused & (1u << i)) && !uv_is_closing((uv_handle_t *)&s->listeners[i]))
      server_on_connection((uv_stream_t *)&s->listeners[i], 0);
}

static void server_on_connection(uv_stream_t *listener, int status) {
  wshub_server_t *s = listener->data;
  int tls = (s->tls_listeners >> ((uv_tcp_t *)listener - s->listeners)) & 1;
  int r = status != 0 ? status : server_accept(s, listener, (int)tls);
  if (r == UV_ENOMEM && status == 0) {
    s->accept_paused |= 1u << ((uv_tcp_t *)listener - s->listeners);
    if (!uv_is_active((uv_handle_t *)&s->accept_timer))
      uv_timer_start(&s->accept_timer, server_on_accept_retry, 100, 0);
  }
  /* Out of descriptors (EMFILE/ENFILE) and the like: libuv keeps the loop
   * from spinning; say so once, not once per attempt. */
  if (r != 0 && !s->accept_failing) {
    s->accept_failing = 1;
    wshub_log(s, WSHUB_LOG_WARN,
              "accept: %s (further failures not logged "
              "until one succeeds)",
              uv_strerror(r));
  }
}

static void server_on_listener_closed(uv_handle_t *h);

/* A listener slot whose setup failed: close its handle. The slot is not
 * reused (the handle is still closing); wshub_close skips it. */
static void server_listener_failed(wshub_server_t *s, uv_tcp_t *l) {
  s->open_handles++;
  s->nlisteners++;
  uv_close((uv_handle_t *)l, server_on_listener_closed);
}

static int server_start_listener(wshub_server_t *s, uv_tcp_t *l, int backlog,
                                 int tls);

/* The next free listener slot, initialized. */
static int server_new_listener(wshub_server_t *s, uv_tcp_t **out) {
  if (s->nlisteners >= WSHUB_MAX_LISTENERS || s->closing)
    return UV_EINVAL;
  uv_tcp_t *l = &s->listeners[s->nlisteners];
  int r = uv_tcp_init(s->loop, l);
  if (r != 0)
    return r;
  l->data = s;
  *out = l;
  return 0;
}

static int server_listen(wshub_server_t *s, const char *host, int port,
                         int backlog, int tls) {
  if (port < 0 || port > 65535 || (tls && s->tls == NULL))
    return UV_EINVAL;
  struct sockaddr_storage addr;
  const char *h = host;
  if (h == NULL || strcmp(h, "localhost") == 0)
    h = "127.0.0.1";
  if (uv_ip6_addr(h, port, (struct sockaddr_in6 *)&addr) != 0 &&
      uv_ip4_addr(h, port, (struct sockaddr_in *)&addr) != 0)
    return UV_EINVAL;
  uv_tcp_t *l;
  int r = server_new_listener(s, &l);
  if (r != 0)
    return r;
  r = uv_tcp_bind(l, (const struct sockaddr *)&addr, 0);
  if (r != 0) {
    server_listener_failed(s, l);
    return r;
  }
  return server_start_listener(s, l, backlog, tls);
}

int wshub_listen(wshub_server_t *s, const char *host, int port, int backlog) {
  return server_listen(s, host, port, backlog, 0);
}

int wshub_listen_tls(wshub_server_t *s, const char *host, int port,
                     int backlog) {
  return server_listen(s, host, port, backlog, 1);
}

/* Starts listening on an initialized l; closes it on failure. */
static int server_start_listener(wshub_server_t *s, uv_tcp_t *l, int backlog,
                                 int tls) {
  int r = uv_listen((uv_stream_t *)l, backlog > 0 ? backlog : 511,
                    server_on_connection);
  if (r != 0) {
    server_listener_failed(s, l);
    return r;
  }
  if (tls)
    s->tls_listeners |= 1u << s->nlisteners;
  s->open_handles++;
  s->nlisteners++;
  if (s->port == 0) {
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    if (uv_tcp_getsockname(l, (struct sockaddr *)&bound, &len) == 0)
      s->port = ntohs(bound.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&bound)->sin6_port
                          : ((struct sockaddr_in *)&bound)->sin_port);
  }
  return 0;
}

int wshub_listen_ops(wshub_server_t *s, const char *host, int port,
                     int backlog) {
  int first = s->nlisteners, port0 = s->port;
  int r = wshub_listen(s, host, port, backlog);
  if (r == 0) {
    s->ops_listeners |= 1u << first;
    s->port = port0; /* the port stays the main one's */
  }
  return r;
}

int wshub_listen_ops_fd(wshub_server_t *s, uv_os_sock_t fd) {
  int first = s->nlisteners, port0 = s->port;
  int r = wshub_listen_fd(s, fd);
  if (r == 0) {
    s->ops_listeners |= 1u << first;
    s->port = port0;
  }
  return r;
}

static int server_listen_fd(wshub_server_t *s, uv_os_sock_t fd, int tls) {
  if (tls && s->tls == NULL)
    return UV_EINVAL;
  uv_tcp_t *l;
  int r = server_new_listener(s, &l);
  if (r != 0)
    return r;
  r = uv_tcp_open(l, fd);
  if (r != 0) {
    server_listener_failed(s, l);
    return r;
  }
  return server_start_listener(s, l, 0, tls);
}

int wshub_listen_fd(wshub_server_t *s, uv_os_sock_t fd) {
  return server_listen_fd(s, fd, 0);
}

int wshub_listen_fd_tls(wshub_server_t *s, uv_os_sock_t fd) {
  return server_listen_fd(s, fd, 1);
}

void *wshub_server_user(const wshub_server_t *s) {
  return s->cfg.user;
}

uv_loop_t *wshub_server_loop(const wshub_server_t *s) {
  return s->loop;
}

int wshub_server_port(const wshub_server_t *s) {
  return s->port;
}

static void server_free_if_done(wshub_server_t *s) {
  if (s->open_handles > 0 || s->live_conns > 0)
    return;
  wshub_metrics_stop(s);
  wshub_close_cb cb = s->close_cb;
  if (cb)
    cb(s);
  wshub_hub_free(&s->hub);
  wshub_map_free(&s->per_ip);
  wshub_buf_unref(s->ping);
  wshub_deflate_free(&s->deflate);
  wshub_conn_pool_free(s);
  if (s->tls != NULL)
    wshub_tls_free(s->tls);
  free(s->tls_scratch);
  free(s);
}

void wshub_server_conn_freed(wshub_server_t *s) {
  s->live_conns--;
  if (s->closing)
    server_free_if_done(s); /* it waited for this one */
}

static void server_on_listener_closed(uv_handle_t *h) {
  wshub_server_t *s = h->data;
  s->open_handles--;
  if (s->closing)
    server_free_if_done(s);
}

static void server_on_handle_closed(uv_handle_t *h) {
  wshub_server_t *s = h->data;
  s->open_handles--;
  server_free_if_done(s);
}

/* When the last connection is gone, close the server's own handles. The
 * connections' handles may still be closing; libuv runs their close
 * callbacks before ours because they were closed first. */
static void server_maybe_done(wshub_server_t *s) {
  if (s->nconns > 0 || s->works > 0 || uv_is_closing((uv_handle_t *)&s->flush))
    return;
  /* Flush whatever the last connections queued before they went. */
  server_on_flush(&s->flush);
  for (int i = 0; i < s->nlisteners; i++) /* operations listeners */
    if (!uv_is_closing((uv_handle_t *)&s->listeners[i]))
      uv_close((uv_handle_t *)&s->listeners[i], server_on_listener_closed);
  uv_close((uv_handle_t *)&s->lag_timer, server_on_handle_closed);
  uv_close((uv_handle_t *)&s->flush, server_on_handle_closed);
  uv_close((uv_handle_t *)&s->shutdown_timer, server_on_handle_closed);
  uv_close((uv_handle_t *)&s->accept_timer, server_on_handle_closed);
  uv_close((uv_handle_t *)&s->deflate.timer, server_on_handle_closed);
}

static void server_on_shutdown_timeout(uv_timer_t *t) {
  wshub_server_t *s = t->data;
  wshub_log(s, WSHUB_LOG_WARN, "shutdown timeout: cutting %zu connection(s)",
            s->nconns);
  while (s->conns != NULL)
    wshub_conn_close(s->conns);
}

void wshub_close(wshub_server_t *s, wshub_close_cb close_cb) {
  if (s->closing)
    return;
  s->closing = 1;
  s->close_cb = close_cb;
  wshub_metric_set(&s->m.draining, 1);
  /* Operations listeners stay open until the last connection is gone, so
   * /readyz can say 503 meanwhile (server_maybe_done closes them). */
  for (int i = 0; i < s->nlisteners; i++)
    if (!((s->ops_listeners >> i) & 1) &&
        !uv_is_closing((uv_handle_t *)&s->listeners[i]))
      uv_close((uv_handle_t *)&s->listeners[i], server_on_listener_closed);
  /* Keep the loop alive until every connection has finished. */
  uv_ref((uv_handle_t *)&s->shutdown_timer);
  uv_timer_start(&s->shutdown_timer, server_on_shutdown_timeout,
                 s->cfg.shutdown_timeout_ms, 0);
  wshub_conn_t *c = s->conns;
  while (c != NULL) {
    wshub_conn_t *next = c->next;
    if (c->proto && c->proto->on_shutdown)
      c->proto->on_shutdown(c);
    else
      wshub_conn_close(c);
    c = next;
  }
  server_maybe_done(s);
}
