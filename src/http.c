/* http.c — HTTP/1.1 connections on llhttp (see http.h).
 *
 * Input is appended to `pending` and parsed from there, so a request that
 * is answered asynchronously can pause the parser (HPE_PAUSED) and leave
 * any pipelined bytes waiting; reading stops meanwhile, so a client cannot
 * queue unbounded work. Header bytes are copied into one growable buffer
 * and indexed by offsets; the wshub_request_t view is built once the
 * header section is complete.
 */
#include "http.h"

#include <jansson.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grow.h"
#include "handshake.h"
#include "pmd.h"
#include "server.h"
#include "static.h"
#include "ws.h"

enum { PHASE_IDLE, PHASE_HEAD, PHASE_BODY, PHASE_RESPONDING };

typedef struct {
  uint32_t name_off, name_len, value_off, value_len;
} http_hdr_t;

struct wshub_http_s {
  llhttp_t parser;
  wshub_conn_t *conn;
  wshub_request_t req;

  char *head; /* target, header names and values, back to back */
  size_t head_len, head_cap;
  uint32_t url_off, url_len;
  http_hdr_t *hdrs;
  size_t nhdrs, hdrs_cap;
  int in_value; /* the last callback appended to a header value */
  wshub_header_t *view;

  char *body;
  size_t body_len, body_cap;

  char *pending; /* received, not yet parsed */
  size_t pending_len, pending_cap;

  wshub_static_resp_t *resp; /* asynchronous response in flight */
  uint8_t phase;
  uint8_t driving;
  uint8_t keep_alive;
  uint8_t is_head;
  uint8_t closing;   /* last response: Connection: close */
  uint8_t in_hook;   /* inside the application's on_request */
  uint8_t responded; /* wshub_respond() answered this request */
  uint8_t held;      /* wshub_http_hold(): answered later, or a stream */
  uint8_t streaming; /* wshub_http_stream_start() sent the head */

  uint64_t t0;         /* uv_hrtime() at the request's first byte */
  int resp_status;     /* the response being sent, for the access log */
  uint64_t resp_bytes; /* its head and body */

  const wshub_http_hold_cb_t *hold_cb; /* while held */
  void *hold_arg;
  uint64_t heartbeat_ms; /* streams: ": ping" comment interval */
};

static const llhttp_settings_t *http_settings(void);

const char *wshub_http_reason(int status) {
  switch (status) {
  case 101:
    return "Switching Protocols";
  case 200:
    return "OK";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 415:
    return "Unsupported Media Type";
  case 429:
    return "Too Many Requests";
  case 408:
    return "Request Timeout";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 426:
    return "Upgrade Required";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  default:
    return "Unknown";
  }
}

wshub_conn_t *wshub_http_conn(const wshub_http_t *h) {
  return h->conn;
}

int wshub_http_is_head(const wshub_http_t *h) {
  return h->is_head;
}

static int http_append(char **buf, size_t *len, size_t *cap, const char *p,
                       size_t n) {
  if (*len + n > *cap) {
    size_t ncap = *cap ? *cap : 512;
    while (ncap < *len + n)
      ncap *= 2;
    char *nb = realloc(*buf, ncap);
    if (nb == NULL)
      return UV_ENOMEM;
    *buf = nb;
    *cap = ncap;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  return 0;
}

static wshub_http_t *http_of(llhttp_t *p) {
  return p->data;
}

static wshub_server_t *http_server(const wshub_http_t *h) {
  return h->conn->server;
}

/* Refuses a request from inside a parser callback. */
static int http_refuse(wshub_http_t *h, int status, const char *detail) {
  wshub_http_error(h, status, detail, 1, NULL);
  return HPE_USER;
}

static int http_head_add(wshub_http_t *h, const char *at, size_t len) {
  if (h->head_len + len > http_server(h)->cfg.max_header_bytes)
    return http_refuse(h, 431, "header section too large");
  if (http_append(&h->head, &h->head_len, &h->head_cap, at, len) != 0)
    return http_refuse(h, 503, "out of memory");
  return 0;
}

static int http_on_message_begin(llhttp_t *p) {
  wshub_http_t *h = http_of(p);
  h->t0 = uv_hrtime();
  h->responded = 0;
  h->head_len = 0;
  h->url_off = h->url_len = 0;
  h->nhdrs = 0;
  h->in_value = 0;
  h->body_len = 0;
  return 0;
}

static int http_on_url(llhttp_t *p, const char *at, size_t len) {
  wshub_http_t *h = http_of(p);
  if (h->url_len == 0)
    h->url_off = (uint32_t)h->head_len;
  h->url_len += (uint32_t)len;
  return http_head_add(h, at, len);
}

static int http_on_header_field(llhttp_t *p, const char *at, size_t len) {
  wshub_http_t *h = http_of(p);
  if (h->nhdrs == 0 || h->in_value) {
    if (h->nhdrs >= http_server(h)->cfg.max_headers)
      return http_refuse(h, 431, "too many header fields");
    if (wshub_grow(&h->hdrs, &h->hdrs_cap, h->nhdrs, sizeof(*h->hdrs), 16))
      return http_refuse(h, 503, "out of memory");
    h->hdrs[h->nhdrs++] =
        (http_hdr_t){(uint32_t)h->head_len, 0, (uint32_t)h->head_len, 0};
    h->in_value = 0;
  }
  h->hdrs[h->nhdrs - 1].name_len += (uint32_t)len;
  h->hdrs[h->nhdrs - 1].value_off = (uint32_t)(h->head_len + len);
  return http_head_add(h, at, len);
}

static int http_on_header_value(llhttp_t *p, const char *at, size_t len) {
  wshub_http_t *h = http_of(p);
  h->in_value = 1;
  h->hdrs[h->nhdrs - 1].value_len += (uint32_t)len;
  return http_head_add(h, at, len);
}

static int http_on_headers_complete(llhttp_t *p) {
  wshub_http_t *h = http_of(p);
  wshub_server_t *s = http_server(h);
  wshub_header_t *view = realloc(h->view, (h->nhdrs + 1) * sizeof(*view));
  if (view == NULL)
    return http_refuse(h, 503, "out of memory");
  h->view = view;
  for (size_t i = 0; i < h->nhdrs; i++) {
    const http_hdr_t *x = &h->hdrs[i];
    const char *v = h->head + x->value_off;
    size_t vl = x->value_len;
    while (vl > 0 && (*v == ' ' || *v == '\t'))
      v++, vl--;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
      vl--;
    view[i] = (wshub_header_t){h->head + x->name_off, x->name_len, v, vl};
  }
  wshub_request_t *r = &h->req;
  memset(r, 0, sizeof(*r));
  r->method = llhttp_get_method(p);
  r->http_major = llhttp_get_http_major(p);
  r->http_minor = llhttp_get_http_minor(p);
  r->target = h->head + h->url_off;
  r->target_len = h->url_len;
  r->headers = view;
  r->nheaders = h->nhdrs;
  r->upgrade = llhttp_get_upgrade(p);
  r->remote = h->conn->peer;
  h->is_head = r->method == HTTP_HEAD;
  if (r->http_major != 1)
    return http_refuse(h, 400, "HTTP/1.0 or HTTP/1.1 request line required");
  /* RFC 9112 §3.2: exactly one Host in HTTP/1.1 (at most one in 1.0). */
  size_t hosts = 0;
  for (size_t i = 0; i < h->nhdrs; i++)
    if (view[i].name_len == 4 && strncasecmp(view[i].name, "host", 4) == 0)
      hosts++;
  if (hosts > 1 || (hosts == 0 && r->http_minor >= 1))
    return http_refuse(
        h, 400, hosts ? "more than one Host header" : "missing Host header");
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->cfg.max_body)
    return http_refuse(h, 413, "request body too large");
  h->phase = PHASE_BODY;
  wshub_conn_timer(h->conn, s->cfg.header_timeout_ms);
  return 0;
}

static int http_on_body(llhttp_t *p, const char *at, size_t len) {
  wshub_http_t *h = http_of(p);
  wshub_server_t *s = http_server(h);
  if (h->body_len + len > s->cfg.max_body)
    return http_refuse(h, 413, "request body too large");
  if (http_append(&h->body, &h->body_len, &h->body_cap, at, len) != 0)
    return http_refuse(h, 503, "out of memory");
  wshub_conn_timer(h->conn, s->cfg.header_timeout_ms);
  return 0;
}

static int http_on_message_complete(llhttp_t *p) {
  wshub_http_t *h = http_of(p);
  h->req.body = h->body;
  h->req.body_len = h->body_len;
  h->req.keep_alive = llhttp_should_keep_alive(p);
  h->keep_alive = (uint8_t)h->req.keep_alive;
  h->phase = PHASE_RESPONDING;
  wshub_conn_timer(h->conn, 0);
  /* Upgrade requests make llhttp stop with HPE_PAUSED_UPGRADE itself. */
  return p->upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t *http_settings(void) {
  static const llhttp_settings_t settings = {
      .on_message_begin = http_on_message_begin,
      .on_url = http_on_url,
      .on_header_field = http_on_header_field,
      .on_header_value = http_on_header_value,
      .on_headers_complete = http_on_headers_complete,
      .on_body = http_on_body,
      .on_message_complete = http_on_message_complete,
  };
  return &settings;
}

int wshub_http_send_head(wshub_http_t *h, int status, const char *extra,
                         uint64_t content_length) {
  wshub_server_t *s = http_server(h);
  const char *conn_hdr = "";
  if (!h->keep_alive || s->closing)
    h->closing = 1;
  if (h->closing)
    conn_hdr = "Connection: close\r\n";
  else if (h->req.http_major == 1 && h->req.http_minor == 0)
    conn_hdr = "Connection: keep-alive\r\n";
  wshub_buf_t *b = wshub_buf_printf(
      "HTTP/1.1 %d %s\r\nServer: wshub/" WSHUB_VERSION
      "\r\nDate: %s\r\n%s%sContent-Length: %llu\r\n\r\n",
      status, wshub_http_reason(status), wshub_server_date(s), conn_hdr,
      extra ? extra : "", (unsigned long long)content_length);
  int r = b != NULL ? wshub_conn_send_buf(h->conn, b) : UV_ENOMEM;
  if (status >= 100 && status <= 599)
    wshub_metric_inc(&s->m.responses[status / 100]);
  h->resp_status = status;
  h->resp_bytes =
      (b ? b->len : 0) + (h->is_head || status == 304 ? 0 : content_length);
  wshub_buf_unref(b);
  if (r != 0)
    h->closing = 1; /* no answer: the connection cannot go on */
  wshub_log(s, WSHUB_LOG_DEBUG, "%s \"%s %.*s\" %d", h->conn->peer,
            llhttp_method_name(h->req.method), (int)h->req.target_len,
            h->req.target ? h->req.target : "", status);
  return r;
}

/* The access log line of the response just queued (cfg.access_log):
 * method, path (bytes outside printable ASCII as '?', at most 512), status,
 * bytes of head and body, milliseconds from the request's first byte to
 * the response queued, and the peer. */
static void http_access(wshub_http_t *h, int status, uint64_t bytes,
                        int stream) {
  wshub_server_t *s = http_server(h);
  if (!s->cfg.access_log || s->cfg.log_level < WSHUB_LOG_INFO)
    return;
  char path[513];
  size_t n = h->req.target ? h->req.target_len : 0;
  if (n > sizeof(path) - 1)
    n = sizeof(path) - 1;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)h->req.target[i];
    path[i] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
  }
  path[n] = '\0';
  double ms = (double)(uv_hrtime() - h->t0) / 1e6;
  json_t *f = json_pack("{s:s, s:s, s:i, s:I, s:f, s:s}", "method",
                        llhttp_method_name(h->req.method), "path", path,
                        "status", status, "bytes", (json_int_t)bytes,
                        "duration_ms", ms, "remote", h->conn->peer);
  if (f != NULL && stream)
    json_object_set_new(f, "stream", json_true());
  wshub_log_fields(s, WSHUB_LOG_INFO, f, "access");
}

void wshub_http_error(wshub_http_t *h, int status, const char *detail,
                      int close, const char *extra) {
  char body[512];
  int n = snprintf(body, sizeof(body), "%d %s\n%s%s", status,
                   wshub_http_reason(status), detail ? detail : "",
                   detail ? "\n" : "");
  if (n < 0 || (size_t)n >= sizeof(body))
    n = (int)strlen(body);
  char hdrs[256];
  snprintf(hdrs, sizeof(hdrs), "Content-Type: text/plain; charset=utf-8\r\n%s",
           extra ? extra : "");
  if (close)
    h->keep_alive = 0;
  wshub_log(http_server(h), WSHUB_LOG_INFO, "%s: %d %s", h->conn->peer, status,
            detail ? detail : wshub_http_reason(status));
  if (wshub_http_send_head(h, status, hdrs, (uint64_t)n) == 0 && !h->is_head &&
      wshub_conn_send_copy(h->conn, body, (size_t)n) != 0)
    h->closing = 1; /* the head promised a body */
  wshub_http_finish(h);
}

static void http_drive(wshub_http_t *h);

/* "Content-Type: …\r\n" + headers into extra[size]. */
static int http_extra(char *extra, size_t size, const char *content_type,
                      const char *headers) {
  int n =
      snprintf(extra, size, "%s%s%s%s", content_type ? "Content-Type: " : "",
               content_type ? content_type : "", content_type ? "\r\n" : "",
               headers ? headers : "");
  return n < 0 || (size_t)n >= size ? UV_E2BIG : 0;
}

/* A whole response: head, body, then the next request. */
static int http_answer(wshub_http_t *h, int status, const char *content_type,
                       const char *headers, const void *body, size_t len) {
  char extra[1024];
  int r = http_extra(extra, sizeof(extra), content_type, headers);
  if (r != 0) {
    wshub_http_error(h, 500, "response headers too long", 1, NULL);
    return r;
  }
  r = wshub_http_send_head(h, status, extra, len);
  if (r == 0 && len > 0 && !h->is_head &&
      (r = wshub_conn_send_copy(h->conn, body, len)) != 0)
    h->closing = 1; /* the head promised a body */
  wshub_http_finish(h);
  return r;
}

int wshub_respond(wshub_response_t *h, int status, const char *content_type,
                  const char *headers, const void *body, size_t len) {
  if (!h->in_hook || h->responded || status < 100 || status > 599)
    return UV_EINVAL;
  h->responded = 1;
  return http_answer(h, status, content_type, headers, body, len);
}

const wshub_request_t *wshub_http_request(const wshub_http_t *h) {
  return &h->req;
}

int wshub_http_hold(wshub_http_t *h, const wshub_http_hold_cb_t *cb, void *arg,
                    uint64_t timeout_ms) {
  if (!h->in_hook || h->responded)
    return UV_EINVAL;
  h->responded = 1;
  h->held = 1;
  h->hold_cb = cb;
  h->hold_arg = arg;
  wshub_metrics_conn_kind(h->conn->server, &h->conn->kind, WSHUB_TR_POLL);
  /* Read on, to see the peer go; what it pipelines waits, bounded. */
  wshub_conn_read_start(h->conn);
  wshub_conn_timer(h->conn, timeout_ms);
  return 0;
}

/* The holder is done with h: no callbacks from now on. */
static void http_unhold(wshub_http_t *h) {
  h->held = 0;
  h->hold_cb = NULL;
  h->hold_arg = NULL;
}

int wshub_http_held_respond(wshub_http_t *h, int status,
                            const char *content_type, const char *headers,
                            const void *body, size_t len) {
  if (!h->held || h->streaming)
    return UV_EINVAL;
  http_unhold(h);
  wshub_metrics_conn_kind(h->conn->server, &h->conn->kind, WSHUB_TR_HTTP);
  wshub_conn_read_stop(h->conn);
  return http_answer(h, status, content_type, headers, body, len);
}

int wshub_http_stream_start(wshub_http_t *h, int status,
                            const char *content_type, const char *headers,
                            uint64_t heartbeat_ms) {
  if (!h->held || h->streaming)
    return UV_EINVAL;
  char extra[1024];
  int r = http_extra(extra, sizeof(extra), content_type, headers);
  if (r != 0)
    return r;
  wshub_server_t *s = http_server(h);
  /* The body ends with the connection: no length, no keep-alive. */
  h->keep_alive = 0;
  h->closing = 1;
  wshub_buf_t *b = wshub_buf_printf(
      "HTTP/1.1 %d %s\r\nServer: wshub/" WSHUB_VERSION
      "\r\nDate: %s\r\nConnection: close\r\n%s\r\n",
      status, wshub_http_reason(status), wshub_server_date(s), extra);
  if (b == NULL)
    return UV_ENOMEM;
  r = wshub_conn_send_buf(h->conn, b);
  wshub_buf_unref(b);
  if (r != 0)
    return r;
  wshub_log(s, WSHUB_LOG_DEBUG, "%s \"%s %.*s\" %d (stream)", h->conn->peer,
            llhttp_method_name(h->req.method), (int)h->req.target_len,
            h->req.target ? h->req.target : "", status);
  wshub_metric_inc(&s->m.responses[status / 100]);
  wshub_metrics_conn_kind(s, &h->conn->kind, WSHUB_TR_SSE);
  http_access(h, status, b->len, 1);
  h->streaming = 1;
  h->heartbeat_ms = heartbeat_ms;
  wshub_conn_timer(h->conn, heartbeat_ms);
  return 0;
}

int wshub_http_stream_send(wshub_http_t *h, wshub_buf_t *b, size_t off,
                           size_t len) {
  if (!h->streaming || h->is_head)
    return h->streaming ? 0 : UV_EINVAL;
  return wshub_conn_send(h->conn, b, off, len);
}

void wshub_http_stream_end(wshub_http_t *h) {
  http_unhold(h);
  wshub_conn_end(h->conn);
}

void wshub_http_finish(wshub_http_t *h) {
  wshub_server_t *s = http_server(h);
  h->resp = NULL;
  if (h->resp_status != 0)
    http_access(h, h->resp_status, h->resp_bytes, 0);
  h->resp_status = 0;
  if (h->closing || !wshub_conn_is_open(h->conn)) {
    wshub_conn_end(h->conn);
    return;
  }
  h->phase = PHASE_IDLE;
  llhttp_resume(&h->parser);
  wshub_conn_timer(h->conn, s->cfg.keepalive_timeout_ms);
  http_drive(h);
}

/* Does the Upgrade header ask for a WebSocket? */
static int http_wants_websocket(const wshub_request_t *r) {
  size_t len;
  const char *v = wshub_request_header(r, "upgrade", &len);
  return v != NULL && wshub_header_has_token(v, len, "websocket");
}

/* Answers the request llhttp just completed. Returns 1 if the connection
 * now speaks WebSocket (h is freed), else 0. */
static int http_route(wshub_http_t *h) {
  wshub_conn_t *c = h->conn;
  wshub_server_t *s = c->server;
  const wshub_request_t *r = &h->req;
  if (c->ops || !http_wants_websocket(r)) {
    if (r->upgrade)
      llhttp_resume_after_upgrade(&h->parser);
    if (c->ops || s->cfg.metrics || s->cfg.health) {
      h->in_hook = 1;
      int handled = wshub_metrics_route(h, r, c->ops);
      h->in_hook = 0;
      if (handled)
        return 0;
    }
    if (s->cfg.on_request != NULL) {
      h->in_hook = 1;
      int handled = s->cfg.on_request(h, r, s->cfg.user);
      h->in_hook = 0;
      if (handled && !h->responded)
        wshub_http_error(h, 500, "the application sent no response", 1, NULL);
      if (handled || h->responded)
        return 0;
    }
    wshub_static_serve(h, r, &h->resp);
    return 0;
  }
  wshub_counters_t *m = &s->m;
  if (!wshub_ws_path_allowed(s, r->target, r->target_len)) {
    wshub_metric_inc(&m->hs_failed[WSHUB_HSF_PATH]);
    wshub_http_error(h, 404, "no WebSocket endpoint at this path", 1, NULL);
    return 0;
  }
  if (!wshub_handshake_origin_ok(r, s->cfg.allow_origins,
                                 s->cfg.nallow_origins)) {
    wshub_metric_inc(&m->hs_failed[WSHUB_HSF_ORIGIN]);
    wshub_http_error(h, 403, "cross-site WebSocket request: origin not allowed",
                     1, NULL);
    return 0;
  }
  wshub_handshake_t hs;
  if (wshub_handshake_check(r, s->cfg.protocols, s->cfg.nprotocols, &hs) != 0) {
    wshub_metric_inc(
        &m->hs_failed[hs.status == 426 ? WSHUB_HSF_VERSION
                      : strstr(hs.reason, "Sec-WebSocket-Key") ? WSHUB_HSF_KEY
                      : hs.status == 400 ? WSHUB_HSF_REQUEST
                                         : WSHUB_HSF_INTERNAL]);
    wshub_http_error(h, hs.status, hs.reason, 1,
                     hs.status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
    return 0;
  }
  wshub_pmd_t pmd;
  int deflate = 0;
  char ext[WSHUB_PMD_RESPONSE_MAX];
  if (s->cfg.deflate) {
    deflate = wshub_pmd_negotiate(r, s->cfg.deflate_client_window, &pmd);
    if (deflate < 0) {
      wshub_metric_inc(&m->hs_failed[WSHUB_HSF_EXTENSIONS]);
      wshub_http_error(h, 400, "malformed Sec-WebSocket-Extensions", 1, NULL);
      return 0;
    }
    if (deflate && wshub_pmd_response(&pmd, ext, sizeof(ext)) == 0)
      deflate = 0; /* cannot happen: the buffer fits every answer */
    if (deflate)
      hs.extensions = ext;
  }
  wshub_ws_t *ws = wshub_ws_new(c, deflate ? &pmd : NULL);
  if (ws == NULL) {
    wshub_metric_inc(&m->hs_failed[WSHUB_HSF_INTERNAL]);
    wshub_http_error(h, 503, "out of memory", 1, NULL);
    return 0;
  }
  char resp[640];
  size_t n = wshub_handshake_response(&hs, resp, sizeof(resp));
  size_t mark = wshub_conn_mark(c);
  int err = n == 0 ? UV_E2BIG : wshub_conn_send_copy(c, resp, n);
  if (err != 0) {
    wshub_metric_inc(&m->hs_failed[WSHUB_HSF_INTERNAL]);
    wshub_ws_discard(ws);
    wshub_http_error(h, err == UV_ENOMEM ? 503 : 500,
                     err == UV_ENOMEM ? "out of memory"
                                      : "cannot build the handshake response",
                     1, NULL);
    return 0;
  }
  /* The application may refuse; what it sent during on_open follows the
   * 101 in the queue, and none of it has left yet (writes are corked). */
  int status = 0;
  if (s->cfg.on_open != NULL)
    status = s->cfg.on_open(wshub_ws_client(ws), r, s->cfg.user);
  if (status != 0) {
    wshub_metric_inc(&m->hs_failed[WSHUB_HSF_REFUSED]);
    wshub_conn_truncate(c, mark);
    wshub_ws_discard(ws);
    if (status < 400 || status > 599)
      status = 403;
    wshub_http_error(h, status, "upgrade refused by the application", 1, NULL);
    return 0;
  }
  wshub_log(s, WSHUB_LOG_DEBUG, "%s \"GET %.*s\" 101", c->peer,
            (int)r->target_len, r->target);
  wshub_metric_inc(&m->upgrades);
  wshub_metric_inc(&m->responses[1]);
  http_access(h, 101, n, 0);
  wshub_metrics_conn_kind(s, &c->kind, WSHUB_TR_WS);
  /* Bytes after the request already belong to the WebSocket. */
  char *rest = h->pending;
  size_t rest_len = h->pending_len;
  h->pending = NULL;
  h->pending_len = h->pending_cap = 0;
  wshub_ws_start(ws, rest, rest_len);
  free(rest);
  return 1;
}

static void http_free(wshub_http_t *h) {
  free(h->head);
  free(h->hdrs);
  free(h->view);
  free(h->body);
  free(h->pending);
  free(h);
}

/* Parses pending input until it runs out, a response is in flight, or the
 * connection changes hands. */
static void http_drive(wshub_http_t *h) {
  if (h->driving)
    return;
  h->driving = 1;
  wshub_conn_t *c = h->conn;
  while (wshub_conn_is_open(c) && h->phase != PHASE_RESPONDING &&
         h->pending_len > 0) {
    if (h->phase == PHASE_IDLE) {
      h->phase = PHASE_HEAD;
      wshub_conn_timer(c, c->server->cfg.header_timeout_ms);
    }
    llhttp_errno_t err = llhttp_execute(&h->parser, h->pending, h->pending_len);
    size_t used = h->pending_len;
    if (err != HPE_OK) {
      const char *pos = llhttp_get_error_pos(&h->parser);
      if (pos != NULL && pos >= h->pending && pos <= h->pending + used)
        used = (size_t)(pos - h->pending);
    }
    memmove(h->pending, h->pending + used, h->pending_len - used);
    h->pending_len -= used;
    if (err == HPE_OK)
      break;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      if (http_route(h)) {
        http_free(h); /* the connection now belongs to ws.c */
        return;
      }
      continue;
    }
    if (err == HPE_USER)
      break; /* a callback already answered */
    wshub_http_error(h, 400, llhttp_get_error_reason(&h->parser), 1, NULL);
    break;
  }
  h->driving = 0;
  if (wshub_conn_is_open(c)) {
    if (h->phase == PHASE_RESPONDING && !h->held)
      wshub_conn_read_stop(c);
    else
      wshub_conn_read_start(c);
  }
}

static void http_on_read(wshub_conn_t *c, const char *data, size_t len) {
  wshub_http_t *h = c->proto_data;
  /* Held: what the peer sends meanwhile waits, up to one request's worth;
   * a stream's peer has nothing to send at all. */
  const wshub_config_t *cfg = &c->server->cfg;
  if (h->held && (h->streaming || h->pending_len + len >
                                      cfg->max_header_bytes + cfg->max_body)) {
    wshub_conn_close(c);
    return;
  }
  if (http_append(&h->pending, &h->pending_len, &h->pending_cap, data, len)) {
    wshub_conn_close(c);
    return;
  }
  http_drive(h);
}

/* The peer half-closed, or the server is shutting down: a response in
 * flight is finished first (without keep-alive), else close now. */
static void http_wind_down(wshub_conn_t *c) {
  wshub_http_t *h = c->proto_data;
  if (h->held) {
    /* The holder lets go; a held request is answered 204, a stream ends
     * after what it has queued. */
    const wshub_http_hold_cb_t *cb = h->hold_cb;
    void *arg = h->hold_arg;
    int streaming = h->streaming;
    http_unhold(h);
    if (cb != NULL && cb->on_gone != NULL)
      cb->on_gone(h, arg);
    h->keep_alive = 0;
    if (streaming)
      wshub_conn_end(c);
    else
      http_answer(h, 204, NULL, NULL, NULL, 0);
    return;
  }
  if (h->phase == PHASE_RESPONDING) {
    h->keep_alive = 0;
    h->closing = 1;
    return;
  }
  wshub_conn_close(c);
}

static void http_on_eof(wshub_conn_t *c, int err) {
  (void)err;
  wshub_http_t *h = c->proto_data;
  if (h->held) {
    wshub_conn_close(c); /* nobody left to answer: on_gone from on_free */
    return;
  }
  http_wind_down(c);
}

static void http_on_written(wshub_conn_t *c) {
  wshub_http_t *h = c->proto_data;
  if (h->resp != NULL)
    wshub_static_on_written(h->resp);
}

static void http_on_timer(wshub_conn_t *c) {
  wshub_http_t *h = c->proto_data;
  if (h->phase == PHASE_HEAD || h->phase == PHASE_BODY) {
    h->req.method = HTTP_GET;
    h->req.target = NULL;
    h->req.target_len = 0;
    h->phase = PHASE_RESPONDING;
    wshub_http_error(h, 408, "request not received in time", 1, NULL);
    return;
  }
  if (h->phase == PHASE_IDLE) {
    wshub_conn_close(c);
    return;
  }
  if (h->streaming) {
    static const char ping[] = ": ping\n\n";
    wshub_conn_send_copy(c, ping, sizeof(ping) - 1);
    wshub_conn_timer(c, h->heartbeat_ms);
    return;
  }
  if (h->held && h->hold_cb != NULL && h->hold_cb->on_timeout != NULL)
    h->hold_cb->on_timeout(h, h->hold_arg);
}

static void http_on_free(wshub_conn_t *c) {
  wshub_http_t *h = c->proto_data;
  if (h->resp != NULL)
    wshub_static_detach(h->resp);
  if (h->held && h->hold_cb != NULL && h->hold_cb->on_gone != NULL)
    h->hold_cb->on_gone(h, h->hold_arg);
  http_free(h);
}

/* HTTP responses pace themselves (static files read the next chunk only
 * when the queue is low), so a full socket is just a slow download. A
 * stream does not: its reader is a slow consumer like a WebSocket's. */
static void http_on_backlog(wshub_conn_t *c) {
  wshub_http_t *h = c->proto_data;
  if (!h->streaming)
    return;
  wshub_metric_inc(&c->server->m.slow);
  wshub_log(c->server, WSHUB_LOG_WARN,
            "%s: slow consumer (%zu bytes queued on an event stream), "
            "disconnecting",
            c->peer, c->queued);
  wshub_conn_close_later(c);
}

static const wshub_proto_t http_proto = {
    .on_backlog = http_on_backlog,
    .on_read = http_on_read,
    .on_eof = http_on_eof,
    .on_written = http_on_written,
    .on_timer = http_on_timer,
    .on_shutdown = http_wind_down,
    .on_free = http_on_free,
};

int wshub_http_attach(wshub_conn_t *c) {
  wshub_http_t *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return UV_ENOMEM;
  h->conn = c;
  llhttp_init(&h->parser, HTTP_REQUEST, http_settings());
  h->parser.data = h;
  c->proto = &http_proto;
  c->proto_data = h;
  wshub_conn_timer(c, c->server->cfg.header_timeout_ms);
  wshub_conn_read_start(c);
  return 0;
}
