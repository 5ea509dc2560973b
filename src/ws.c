/* ws.c — WebSocket sessions on wslay (see ws.h).
 *
 * The whole glue is one pump, ws_proceed(): feed wslay what was read, let
 * it emit what it queued, then decide whether the session is over. Data
 * frames we send bypass wslay's queue (they are prebuilt by frame.c and
 * shared), which keeps order because wslay's send callback copies every
 * byte it produces straight into the same connection queue.
 *
 * A wslay context costs about 9 KiB, so an idle connection holds none: one
 * is created when bytes arrive and freed again once wslay holds no partial
 * frame, no unfinished fragmented message and nothing to send (the frame
 * callbacks tell us how many bytes complete frames used, so "everything fed
 * was consumed" is exact). Keep-alive pings are prebuilt frames. Once a
 * close handshake starts the context stays until the end.
 *
 * Application callbacks run inside wslay_event_recv(); if one of them ends
 * up closing the connection, the wslay context is freed only after
 * wslay_event_recv() has returned (`in_recv` / `dead`).
 */
#include "ws.h"

#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "deflate.h"
#include "frame.h"
#include "hub.h"
#include "server.h"
#include "utf8.h"

struct wshub_ws_s {
  wslay_event_context_ptr ctx; /* NULL while quiescent */
  wshub_conn_t *conn;
  wshub_client_t *client; /* NULL once gone */
  const uint8_t *in;      /* input being fed to wslay, borrowed */
  size_t in_len;
  uint64_t fed;        /* bytes given to the current context */
  uint64_t consumed;   /* bytes of complete frames it parsed */
  uint64_t frame_len;  /* header + payload of the frame being parsed */
  uint64_t last_rx;    /* uv_now() of the last byte received */
  uint16_t close_code; /* received from the peer, 0 if none */
  uint8_t pinged;      /* a keep-alive ping is unanswered */
  uint8_t closing;     /* a close handshake started (either side) */
  uint8_t failed;      /* our send callback failed */
  uint8_t in_recv;     /* inside wslay_event_recv() */
  uint8_t dead;        /* the connection closed during in_recv */
  uint8_t bad_close;   /* the peer's close frame had a 1-byte payload */
  uint8_t in_message;  /* a fragmented data message is unfinished */
  uint8_t deflate;     /* permessage-deflate negotiated */
  uint8_t server_bits; /* its window for what we send */
  uint8_t client_bits; /* 0: the client compresses each message alone */
  uint8_t tx_close;    /* the payload wslay sends next is a close's */
  uint8_t tx_payload;  /* bytes of that control frame's payload to come */
  uint16_t fail_code;  /* a callback failed the connection with this */
  const char *fail_reason;
  struct z_stream_s *inflater; /* the client's kept context, made lazily */
  char *close_reason;          /* the peer's close reason, if it sent one */
};

int wshub_ws_path_allowed(wshub_server_t *s, const char *target, size_t len) {
  if (s->cfg.ws_npaths == 0)
    return 1;
  size_t plen = 0;
  while (plen < len && target[plen] != '?' && target[plen] != '#')
    plen++;
  for (size_t i = 0; i < s->cfg.ws_npaths; i++) {
    const char *p = s->cfg.ws_paths[i];
    if (strlen(p) == plen && memcmp(p, target, plen) == 0)
      return 1;
  }
  return 0;
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                          int flags, void *user) {
  (void)flags;
  wshub_ws_t *ws = user;
  if (ws->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < ws->in_len ? len : ws->in_len;
  memcpy(buf, ws->in, n);
  ws->in += n;
  ws->in_len -= n;
  ws->fed += n;
  return (ssize_t)n;
}

/* Counts the close frames wslay sends (its answer to the peer's close, or
 * ours from wshub_ws_close): it sends only control frames, each header in
 * one call and the payload, if any, in the next. */
static void ws_count_tx(wshub_ws_t *ws, const uint8_t *d, size_t len) {
  wshub_counters_t *m = &ws->conn->server->m;
  if (ws->tx_payload > 0) {
    if (ws->tx_close && len >= 2)
      wshub_metric_inc(&m->close_tx[wshub_close_slot(d[0] << 8 | d[1])]);
    ws->tx_close = 0;
    ws->tx_payload = (uint8_t)(len < ws->tx_payload ? ws->tx_payload - len : 0);
    return;
  }
  if (len < 2 || (d[1] & 0x7f) > 125)
    return;
  size_t plen = d[1] & 0x7f;
  if ((d[0] & 0x0f) == WSLAY_CONNECTION_CLOSE) {
    if (plen == 0)
      wshub_metric_inc(&m->close_tx[wshub_close_slot(1005)]);
    else if (len >= 4)
      wshub_metric_inc(&m->close_tx[wshub_close_slot(d[2] << 8 | d[3])]);
    else
      ws->tx_close = 1;
  }
  if (len < 2 + plen)
    ws->tx_payload = (uint8_t)(2 + plen - len);
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                          size_t len, int flags, void *user) {
  (void)flags;
  wshub_ws_t *ws = user;
  ws_count_tx(ws, data, len);
  if (wshub_conn_send_copy(ws->conn, data, len) != 0) {
    ws->failed = 1;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

/* On the fan-out path: flags only (wslay stopping to read is mirrored into
 * `closing` by the pump). */
static int ws_can_send(const wshub_ws_t *ws) {
  return !ws->dead && !ws->closing && !ws->failed &&
         wshub_conn_is_open(ws->conn);
}

int wshub_ws_send_frame(wshub_ws_t *ws, wshub_buf_t *frame) {
  if (!ws_can_send(ws))
    return UV_ECANCELED;
  if (ws->deflate)
    frame =
        wshub_deflate_frame(&ws->conn->server->deflate, frame, ws->server_bits);
  return wshub_conn_send_buf(ws->conn, frame);
}

static const wshub_proto_t ws_proto;

void wshub_ws_drop(wshub_ws_t *ws, uint16_t code, const char *reason) {
  if (ws->dead || !wshub_conn_is_open(ws->conn))
    return;
  wshub_conn_t *c = ws->conn;
  ws->failed = 1;
  /* Say why, if the socket takes it at once and the stream is between
   * frames (nothing in flight; before the 101 has gone out, or after a
   * close frame, nothing may be said); the queue is dropped. */
  if (c->proto == &ws_proto && !ws->closing) {
    uint8_t f[WSHUB_FRAME_CLOSE_MAX];
    size_t n = wshub_frame_close_into(f, code, reason);
    if (wshub_conn_write_now(c, f, n) == (int)n)
      wshub_metric_inc(&c->server->m.close_tx[wshub_close_slot(code)]);
  }
  wshub_conn_close_later(c);
}

void wshub_ws_drop_slow(wshub_ws_t *ws) {
  if (ws->dead || !wshub_conn_is_open(ws->conn))
    return;
  wshub_metric_inc(&ws->conn->server->m.slow);
  wshub_log(ws->conn->server, WSHUB_LOG_WARN,
            "%s: slow consumer (%zu bytes queued), disconnecting",
            ws->conn->peer, ws->conn->queued);
  wshub_ws_drop(ws, 1008, "slow consumer: too many bytes queued");
}

/* Fails the connection from inside wslay_event_recv: wslay stops reading
 * and the pump sends the close (ws_fail). */
static void ws_fail_later(wshub_ws_t *ws, wslay_event_context_ptr ctx,
                          uint16_t code, const char *reason) {
  ws->fail_code = code;
  ws->fail_reason = reason;
  wslay_event_shutdown_read(ctx);
}

/* Inflates a compressed message into *out (malloc'd), or fails the
 * connection and returns -1. */
static int ws_inflate(wshub_ws_t *ws, wslay_event_context_ptr ctx,
                      const struct wslay_event_on_msg_recv_arg *m,
                      uint8_t **out, size_t *out_len) {
  wshub_server_t *s = ws->conn->server;
  if (ws->client_bits != 0 && ws->inflater == NULL &&
      (ws->inflater = wshub_deflate_inflater_new(ws->client_bits)) == NULL) {
    ws_fail_later(ws, ctx, 1011, "internal error");
    return -1;
  }
  switch (wshub_deflate_inflate(&s->deflate, ws->inflater, m->msg,
                                m->msg_length, s->cfg.max_message, out,
                                out_len)) {
  case WSHUB_INFLATE_OK:
    break;
  case WSHUB_INFLATE_TOO_BIG:
    ws_fail_later(ws, ctx, 1009, "message too big");
    return -1;
  case WSHUB_INFLATE_BAD:
    ws_fail_later(ws, ctx, 1007, "invalid compressed data");
    return -1;
  default:
    ws_fail_later(ws, ctx, 1011, "internal error");
    return -1;
  }
  if (m->opcode == WSLAY_TEXT_FRAME && !wshub_utf8_valid(*out, *out_len)) {
    free(*out);
    ws_fail_later(ws, ctx, 1007, "invalid UTF-8");
    return -1;
  }
  return 0;
}

static void ws_on_msg(wslay_event_context_ptr ctx,
                      const struct wslay_event_on_msg_recv_arg *m, void *user) {
  wshub_ws_t *ws = user;
  switch (m->opcode) {
  case WSLAY_PONG:
    ws->pinged = 0;
    return;
  case WSLAY_PING:
    /* Emit the pong wslay just queued now: if a close follows in the same
     * input, wslay would drop a control frame still waiting behind it. */
    if (wslay_event_send(ctx) != 0)
      ws->failed = 1;
    return;
  case WSLAY_CONNECTION_CLOSE:
    ws->closing = 1;
    ws->close_code = m->status_code ? m->status_code : 1005;
    wshub_metric_inc(
        &ws->conn->server->m.close_rx[wshub_close_slot(ws->close_code)]);
    if (m->msg_length > 2 && ws->close_reason == NULL &&
        (ws->close_reason = malloc(m->msg_length - 1)) != NULL) {
      memcpy(ws->close_reason, m->msg + 2, m->msg_length - 2);
      ws->close_reason[m->msg_length - 2] = '\0';
    }
    return;
  case WSLAY_TEXT_FRAME:
  case WSLAY_BINARY_FRAME:
    wshub_metric_inc(&ws->conn->server->m.ws_msgs_in);
    break;
  default:
    return;
  }
  if (!ws_can_send(ws))
    return;
  const uint8_t *msg = m->msg;
  size_t len = m->msg_length;
  uint8_t *inflated = NULL;
  if (m->rsv & WSLAY_RSV1_BIT) {
    if (ws_inflate(ws, ctx, m, &inflated, &len) != 0)
      return;
    msg = inflated;
  }
  wshub_server_t *s = ws->conn->server;
  if (s->cfg.echo) {
    wshub_buf_t *f = wshub_frame_build(m->opcode, msg, len);
    int r = f == NULL ? UV_ENOMEM : wshub_ws_send_frame(ws, f);
    if (f == NULL)
      wshub_conn_close_later(ws->conn);
    else if (r == UV_ENOBUFS)
      wshub_ws_drop_slow(ws);
    else if (r == 0)
      wshub_metric_inc(&s->m.deliveries);
    wshub_buf_unref(f);
  } else if (s->cfg.on_message != NULL && ws->client != NULL) {
    s->cfg.on_message(ws->client, (const char *)msg, len,
                      m->opcode == WSLAY_BINARY_FRAME, s->cfg.user);
  }
  free(inflated);
}

/* Frame boundaries, for knowing when wslay holds no partial input. Also
 * RFC 6455 §5.5.1: a close body is empty or starts with a 2-byte code;
 * wslay treats a 1-byte body like an empty one, so remember it and let the
 * pump answer 1002 instead. */
static void
ws_on_frame_start(wslay_event_context_ptr ctx,
                  const struct wslay_event_on_frame_recv_start_arg *f,
                  void *user) {
  (void)ctx;
  wshub_ws_t *ws = user;
  uint64_t len = f->payload_length;
  /* Client frames are masked (4 bytes); wslay rejects non-minimal lengths. */
  ws->frame_len = 2 + 4 + (len < 126 ? 0 : len <= 0xffff ? 2 : 8) + len;
  if (f->opcode == WSLAY_TEXT_FRAME || f->opcode == WSLAY_BINARY_FRAME)
    ws->in_message = !f->fin;
  else if (f->opcode == WSLAY_CONTINUATION_FRAME && f->fin)
    ws->in_message = 0;
  if (f->opcode == WSLAY_CONNECTION_CLOSE && f->payload_length == 1)
    ws->bad_close = 1;
}

static void ws_on_frame_end(wslay_event_context_ptr ctx, void *user) {
  (void)ctx;
  wshub_ws_t *ws = user;
  ws->consumed += ws->frame_len;
  ws->frame_len = 0;
}

static int ws_ctx_acquire(wshub_ws_t *ws) {
  if (ws->ctx != NULL)
    return 0;
  static const struct wslay_event_callbacks callbacks = {
      .recv_callback = ws_recv_cb,
      .send_callback = ws_send_cb,
      .on_msg_recv_callback = ws_on_msg,
      .on_frame_recv_start_callback = ws_on_frame_start,
      .on_frame_recv_end_callback = ws_on_frame_end,
  };
  if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
    ws->ctx = NULL;
    return UV_ENOMEM;
  }
  wslay_event_config_set_max_recv_msg_length(ws->ctx,
                                             ws->conn->server->cfg.max_message);
  if (ws->deflate)
    wslay_event_config_set_allowed_rsv_bits(ws->ctx, WSLAY_RSV1_BIT);
  ws->fed = ws->consumed = 0;
  return 0;
}

static void ws_ctx_release(wshub_ws_t *ws) {
  if (ws->ctx != NULL)
    wslay_event_context_free(ws->ctx);
  ws->ctx = NULL;
}

/* True when dropping the context loses nothing. */
static int ws_quiescent(const wshub_ws_t *ws) {
  return ws->ctx != NULL && !ws->closing && !ws->failed && !ws->in_message &&
         ws->fed == ws->consumed && wslay_event_get_read_enabled(ws->ctx) &&
         !wslay_event_want_write(ws->ctx);
}

/* Fails the connection with our own close frame, bypassing wslay, whose
 * framing layer answers malformed headers with an empty close. */
static void ws_fail(wshub_ws_t *ws, uint16_t code, const char *reason) {
  wshub_buf_t *f = wshub_frame_close(code, reason);
  if (f != NULL && wshub_conn_send_buf(ws->conn, f) == 0)
    wshub_metric_inc(&ws->conn->server->m.close_tx[wshub_close_slot(code)]);
  wshub_buf_unref(f);
  ws->closing = 1;
  wshub_log(ws->conn->server, WSHUB_LOG_INFO, "%s: websocket failed: %u %s",
            ws->conn->peer, code, reason);
  wshub_conn_end(ws->conn);
}

static void ws_free(wshub_ws_t *ws) {
  ws_ctx_release(ws);
  wshub_deflate_inflater_free(ws->inflater);
  free(ws->close_reason);
  free(ws);
}

/* The pump: feed input to wslay, emit what it queued, settle the state. */
static void ws_proceed(wshub_ws_t *ws, const uint8_t *data, size_t len) {
  wshub_conn_t *c = ws->conn;
  if (len > 0 && ws_ctx_acquire(ws) != 0) {
    wshub_conn_close(c);
    return;
  }
  if (ws->ctx == NULL)
    return; /* nothing to feed, nothing held */
  if (len > 0 && wslay_event_want_read(ws->ctx)) {
    ws->in = data;
    ws->in_len = len;
    ws->in_recv = 1;
    int r = wslay_event_recv(ws->ctx);
    ws->in_recv = 0;
    ws->in = NULL;
    ws->in_len = 0;
    if (ws->dead) {
      ws_free(ws); /* closed by a callback meanwhile */
      return;
    }
    if (ws->fail_code != 0) {
      ws_fail(ws, ws->fail_code, ws->fail_reason);
      return;
    }
    if (!wslay_event_get_read_enabled(ws->ctx))
      ws->closing = 1; /* wslay answered a close or failed the frame */
    if ((r == WSLAY_ERR_CALLBACK_FAILURE && !ws->failed) || ws->bad_close) {
      ws_fail(ws, 1002, "protocol error");
      return;
    }
    if (r != 0) {
      wshub_conn_close(c);
      return;
    }
  }
  if (!wshub_conn_is_open(c))
    return;
  if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
    wshub_conn_close(c);
    return;
  }
  if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx)) {
    /* Close frames exchanged, or we failed the connection: the server
     * closes the TCP connection first (RFC 6455 §7.1.1). */
    ws->closing = 1;
    wshub_conn_end(c);
    return;
  }
  if (wslay_event_get_close_sent(ws->ctx)) {
    ws->closing = 1;
    wshub_conn_timer(c, c->server->cfg.close_timeout_ms);
    return;
  }
  if (ws_quiescent(ws))
    ws_ctx_release(ws);
}

void wshub_ws_close(wshub_ws_t *ws, uint16_t code, const char *reason) {
  if (ws->dead || ws->closing || !wshub_conn_is_open(ws->conn))
    return;
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 123)
    rl = 123;
  if (ws_ctx_acquire(ws) != 0 ||
      wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rl) !=
          0) {
    /* Out of memory: no closing handshake, the connection just goes (at
     * the end of the loop turn: the caller may be inside a callback). */
    wshub_conn_close_later(ws->conn);
    return;
  }
  ws->closing = 1;
  if (!ws->in_recv)
    ws_proceed(ws, NULL, 0);
  else if (wslay_event_send(ws->ctx) != 0)
    ws->failed = 1;
}

static void ws_on_read(wshub_conn_t *c, const char *data, size_t len) {
  wshub_ws_t *ws = c->proto_data;
  ws->last_rx = uv_now(c->server->loop);
  ws->pinged = 0;
  ws_proceed(ws, (const uint8_t *)data, len);
}

static void ws_on_eof(wshub_conn_t *c, int err) {
  (void)err;
  wshub_conn_close(c); /* the peer is gone: nothing more can be said */
}

static void ws_on_timer(wshub_conn_t *c) {
  wshub_ws_t *ws = c->proto_data;
  wshub_server_t *s = c->server;
  if (ws->closing) {
    wshub_log(s, WSHUB_LOG_INFO, "%s: close handshake timed out", c->peer);
    wshub_conn_close(c);
    return;
  }
  uint64_t interval = s->cfg.ping_interval_ms;
  if (interval == 0)
    return;
  if (ws->pinged) {
    wshub_log(s, WSHUB_LOG_INFO, "%s: no pong, dropping", c->peer);
    wshub_conn_close(c);
    return;
  }
  uint64_t idle = uv_now(s->loop) - ws->last_rx;
  if (idle < interval) {
    wshub_conn_timer(c, interval - idle);
    return;
  }
  wshub_buf_t *ping = wshub_server_ping_frame(s);
  if (ping != NULL && wshub_ws_send_frame(ws, ping) == 0)
    ws->pinged = 1;
  wshub_conn_timer(c, interval);
}

static void ws_on_shutdown(wshub_conn_t *c) {
  wshub_ws_close(c->proto_data, 1001, "server shutting down");
}

/* Tells the application and the hub the client is gone. */
static void ws_client_gone(wshub_ws_t *ws) {
  wshub_client_t *cl = ws->client;
  if (cl == NULL)
    return;
  ws->client = NULL;
  wshub_server_t *s = ws->conn->server;
  if (s->cfg.on_close != NULL) {
    int code = ws->close_code ? ws->close_code : 1006;
    s->cfg.on_close(cl, code, ws->close_reason ? ws->close_reason : "",
                    s->cfg.user);
  }
  cl->ws = NULL;
  wshub_hub_client_free(cl);
}

static void ws_on_free(wshub_conn_t *c) {
  wshub_ws_t *ws = c->proto_data;
  ws->dead = 1;
  ws_client_gone(ws);
  if (!ws->in_recv)
    ws_free(ws);
}

static void ws_on_backlog(wshub_conn_t *c) {
  wshub_ws_drop_slow(c->proto_data);
}

static const wshub_proto_t ws_proto = {
    .on_read = ws_on_read,
    .on_backlog = ws_on_backlog,
    .on_eof = ws_on_eof,
    .on_timer = ws_on_timer,
    .on_shutdown = ws_on_shutdown,
    .on_free = ws_on_free,
};

wshub_ws_t *wshub_ws_new(wshub_conn_t *c, const wshub_pmd_t *pmd) {
  wshub_ws_t *ws = calloc(1, sizeof(*ws));
  if (ws == NULL)
    return NULL;
  ws->conn = c;
  if (pmd != NULL) {
    ws->deflate = 1;
    ws->server_bits = pmd->server_bits;
    ws->client_bits = pmd->client_bits;
  }
  ws->client = wshub_hub_client_new(c->server, ws, c->peer);
  if (ws->client == NULL) {
    free(ws);
    return NULL;
  }
  return ws;
}

wshub_client_t *wshub_ws_client(const wshub_ws_t *ws) {
  return ws->client;
}

void wshub_ws_discard(wshub_ws_t *ws) {
  if (ws->client != NULL) {
    ws->client->ws = NULL;
    wshub_hub_client_free(ws->client);
  }
  ws_free(ws);
}

void wshub_ws_start(wshub_ws_t *ws, const char *rest, size_t rest_len) {
  wshub_conn_t *c = ws->conn;
  wshub_server_t *s = c->server;
  ws->last_rx = uv_now(s->loop);
  c->proto = &ws_proto;
  c->proto_data = ws;
  wshub_conn_timer(c, s->cfg.ping_interval_ms);
  if (s->closing) {
    wshub_ws_close(ws, 1001, "server shutting down");
    return;
  }
  if (rest_len > 0)
    ws_proceed(ws, (const uint8_t *)rest, rest_len);
  if (wshub_conn_is_open(c))
    wshub_conn_read_start(c);
}
