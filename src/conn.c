/* conn.c — one TCP connection: reads into the loop-wide buffer, an ordered
 * and corked write queue of shared buffers, half-close with lingering, and
 * a lifetime that survives asynchronous work (see conn.h). With TLS it also
 * drives the connection's engine (tls.h): decrypting what is read before
 * the protocol sees it, and encrypting the queue at flush time. */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "server.h"
#include "tls.h"

#define CONN_LINGER_MS 2000
#define CONN_MAX_IOV 256

static void conn_on_handle_closed(uv_handle_t *h);
static void conn_tls_read(wshub_conn_t *c, size_t n);
static void conn_tls_flush(wshub_conn_t *c);
static int conn_tls_busy(const wshub_conn_t *c);

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  wshub_conn_t *c = h->data;
  buf->base = c->server->readbuf;
  buf->len = sizeof(c->server->readbuf);
}

static void conn_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  wshub_conn_t *c = st->data;
  if (n == 0)
    return;
  if (c->state == WSHUB_CONN_CLOSING)
    return;
  if (n > 0)
    wshub_metric_add(&c->server->m.bytes_in, (uint64_t)n);
  if (c->lingering) {
    if (n < 0)
      wshub_conn_close(c); /* peer finished: done lingering */
    return;                /* discard */
  }
  if (n < 0) {
    wshub_conn_read_stop(c);
    if (c->proto && c->proto->on_eof)
      c->proto->on_eof(c, (int)n);
    else
      wshub_conn_close(c);
    return;
  }
  if (c->tls != NULL) {
    conn_tls_read(c, (size_t)n);
    return;
  }
  if (c->state == WSHUB_CONN_OPEN && c->proto)
    c->proto->on_read(c, c->server->readbuf, (size_t)n);
}

static void conn_on_timer(uv_timer_t *t) {
  wshub_conn_t *c = t->data;
  if (c->lingering || c->state == WSHUB_CONN_ENDING) {
    wshub_conn_close(c);
    return;
  }
  if (c->state == WSHUB_CONN_OPEN && c->proto && c->proto->on_timer)
    c->proto->on_timer(c);
}

int wshub_conn_accept(wshub_server_t *s, uv_stream_t *listener,
                      wshub_conn_t **out) {
  wshub_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  c->server = s;
  int r = uv_tcp_init(s->loop, &c->tcp);
  if (r != 0) {
    free(c);
    return r;
  }
  c->tcp.data = c;
  c->holds = 1;    /* the tcp handle */
  s->live_conns++; /* the server outlives its connections' memory */
  r = uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (r == 0)
    r = uv_timer_init(s->loop, &c->timer);
  if (r != 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
    c->state = WSHUB_CONN_CLOSING;
    return r;
  }
  c->timer.data = c;
  c->holds++; /* the timer handle */
  uv_tcp_nodelay(&c->tcp, 1);

  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->peer[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET6) {
      const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, ip, sizeof(ip));
      port = ntohs(a->sin6_port);
    } else if (ss.ss_family == AF_INET) {
      const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
      uv_ip4_name(a, ip, sizeof(ip));
      port = ntohs(a->sin_port);
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
  }
  wshub_server_conn_added(s, c);
  *out = c;
  return 0;
}

void wshub_conn_read_start(wshub_conn_t *c) {
  if (c->reading || c->state == WSHUB_CONN_CLOSING)
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read) == 0)
    c->reading = 1;
}

void wshub_conn_read_stop(wshub_conn_t *c) {
  if (!c->reading)
    return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

void wshub_conn_timer(wshub_conn_t *c, uint64_t ms) {
  if (c->state == WSHUB_CONN_CLOSING)
    return;
  if (ms == 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, conn_on_timer, ms, 0);
}

/* The server's pool of spare queue arrays: a LIFO list threaded through
 * the arrays themselves. A connection gives its array back when its queue
 * drains and takes one when it queues again, so a busy connection does not
 * regrow its array from nothing every loop turn, and an idle one holds
 * none. */
typedef struct conn_spare_s {
  struct conn_spare_s *next;
  size_t cap;
} conn_spare_t;

#define CONN_POOL_BYTES (1u << 20)    /* spare arrays kept, in all */
#define CONN_POOL_MIN_CAP 32          /* entries; smaller ones cost nothing */
#define CONN_POOL_MAX_CAP (16u << 10) /* entries; bigger arrays are freed */

static void conn_wq_give(wshub_conn_t *c) {
  wshub_server_t *s = c->server;
  size_t bytes = c->wq_cap * sizeof(*c->wq);
  if (c->wq_cap < CONN_POOL_MIN_CAP || c->wq_cap > CONN_POOL_MAX_CAP ||
      s->wq_pool_bytes + bytes > CONN_POOL_BYTES) {
    free(c->wq);
  } else {
    conn_spare_t *sp = (conn_spare_t *)(void *)c->wq;
    sp->next = s->wq_pool;
    sp->cap = c->wq_cap;
    s->wq_pool = sp;
    s->wq_pool_bytes += bytes;
  }
  c->wq = NULL;
  c->wq_head = c->wq_tail = c->wq_cap = 0;
}

static void conn_wq_take(wshub_conn_t *c) {
  wshub_server_t *s = c->server;
  conn_spare_t *sp = s->wq_pool;
  if (sp == NULL)
    return;
  s->wq_pool = sp->next;
  c->wq_cap = sp->cap;
  c->wq = (wshub_wentry_t *)(void *)sp;
  s->wq_pool_bytes -= c->wq_cap * sizeof(*c->wq);
}

void wshub_conn_pool_free(wshub_server_t *s) {
  while (s->wq_pool != NULL) {
    conn_spare_t *sp = s->wq_pool;
    s->wq_pool = sp->next;
    free(sp);
  }
  s->wq_pool_bytes = 0;
}

static int conn_wq_grow(wshub_conn_t *c) {
  if (c->wq_head > 0 && c->wq_head == c->wq_tail && c->wq_writing == 0) {
    c->wq_head = c->wq_tail = 0;
  }
  if (c->wq_tail < c->wq_cap)
    return 0;
  if (c->wq == NULL) {
    conn_wq_take(c);
    if (c->wq_cap > 0)
      return 0;
  }
  /* Compact first: entries before wq_head are gone. */
  if (c->wq_head > c->wq_cap / 2) {
    memmove(c->wq, c->wq + c->wq_head,
            (c->wq_tail - c->wq_head) * sizeof(*c->wq));
    c->wq_tail -= c->wq_head;
    c->wq_head = 0;
    return 0;
  }
  return wshub_grow(&c->wq, &c->wq_cap, c->wq_tail, sizeof(*c->wq), 8);
}

int wshub_conn_send(wshub_conn_t *c, wshub_buf_t *buf, size_t off, size_t len) {
  if (c->state != WSHUB_CONN_OPEN)
    return UV_ECANCELED;
  if (len == 0)
    return 0;
  size_t limit = c->server->cfg.max_backlog;
  if (limit > 0 && c->queued + len > 4 * limit && c->queued > 0)
    return UV_ENOBUFS;
  int r = conn_wq_grow(c);
  if (r != 0)
    return r;
  c->wq[c->wq_tail++] = (wshub_wentry_t){wshub_buf_ref(buf), off, len};
  c->queued += len;
  wshub_metric_add(&c->server->m.queued, len);
  wshub_server_mark_dirty(c->server, c);
  return 0;
}

int wshub_conn_send_buf(wshub_conn_t *c, wshub_buf_t *buf) {
  return wshub_conn_send(c, buf, 0, buf->len);
}

int wshub_conn_send_copy(wshub_conn_t *c, const void *p, size_t len) {
  wshub_buf_t *b = wshub_buf_copy(p, len);
  if (b == NULL)
    return UV_ENOMEM;
  int r = wshub_conn_send_buf(c, b);
  wshub_buf_unref(b);
  return r;
}

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
  wshub_conn_t *c = req->data;
  free(req);
  if (c->state == WSHUB_CONN_CLOSING)
    return;
  if (status != 0) {
    wshub_conn_close(c);
    return;
  }
  /* Linger: read and discard until the peer closes, so that our last bytes
   * are not destroyed by a RST provoked by unread input. */
  c->lingering = 1;
  wshub_conn_read_start(c);
  uv_timer_start(&c->timer, conn_on_timer, CONN_LINGER_MS, 0);
}

static void conn_maybe_shutdown(wshub_conn_t *c) {
  if (c->state != WSHUB_CONN_ENDING || c->wq_head != c->wq_tail ||
      c->lingering || c->shutting)
    return;
  if (c->tls != NULL) {
    /* Everything written, then close_notify, written too. */
    if (!c->tls->notified)
      wshub_tls_conn_shutdown(c->tls);
    if (conn_tls_busy(c)) {
      wshub_server_mark_dirty(c->server, c);
      return;
    }
  }
  c->shutting = 1;
  /* Rare, so not embedded in every connection. */
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (req != NULL) {
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, conn_on_shutdown) == 0)
      return;
    free(req);
  }
  /* Close at the flush, not now: wshub_conn_end() callers go on using
   * their protocol state, which closing would free. */
  c->close_later = 1;
  wshub_server_mark_dirty(c->server, c);
}

static void conn_release_written(wshub_conn_t *c, size_t n) {
  for (size_t i = 0; i < n; i++) {
    wshub_wentry_t *e = &c->wq[c->wq_head + i];
    c->queued -= e->len;
    wshub_metric_sub(&c->server->m.queued, e->len);
    wshub_buf_unref(e->buf);
  }
  c->wq_head += n;
}

static void conn_drained(wshub_conn_t *c);

/* Bytes the peer has not taken yet, against max_backlog. */
static int conn_backlogged(wshub_conn_t *c, size_t waiting) {
  size_t limit = c->server->cfg.max_backlog;
  if (limit == 0 || waiting <= limit || c->state == WSHUB_CONN_CLOSING)
    return 0;
  if (c->proto && c->proto->on_backlog)
    c->proto->on_backlog(c);
  else
    wshub_conn_close(c);
  return 1;
}

/* The end of a write request, plain or TLS: 1 if the connection is done
 * with (closing, or the write failed: closed) and the request's hold was
 * released; 0 if it goes on (then conn_write_next). */
static int conn_write_ended(wshub_conn_t *c, int status) {
  if (c->state != WSHUB_CONN_CLOSING && status == 0)
    return 0;
  if (c->state != WSHUB_CONN_CLOSING)
    wshub_conn_close(c);
  wshub_conn_release(c);
  return 1;
}

/* The socket has taken a write: the protocol may queue more; the request's
 * hold is released. */
static void conn_write_next(wshub_conn_t *c) {
  if (c->state == WSHUB_CONN_OPEN && c->proto && c->proto->on_written)
    c->proto->on_written(c);
  wshub_conn_release(c);
}

static void conn_on_write(uv_write_t *req, int status) {
  wshub_conn_t *c = req->data;
  if (status == 0)
    for (size_t i = 0; i < c->wq_writing; i++)
      wshub_metric_add(&c->server->m.bytes_out, c->wq[c->wq_head + i].len);
  conn_release_written(c, c->wq_writing);
  c->wq_writing = 0;
  if (conn_write_ended(c, status))
    return;
  if (c->wq_head != c->wq_tail) {
    /* The rest goes at the next flush, which also judges the backlog by
     * what the socket then leaves unsent (the queue here may hold far more
     * than the one entry that was out: that is no sign of a slow peer). */
    wshub_server_mark_dirty(c->server, c);
  } else {
    conn_drained(c);
  }
  conn_write_next(c);
}

/* Drops the first `bytes` written bytes from the queue; a partly written
 * entry is advanced. */
static void conn_consume(wshub_conn_t *c, size_t bytes) {
  while (bytes > 0) {
    wshub_wentry_t *e = &c->wq[c->wq_head];
    if (bytes < e->len) {
      e->off += bytes;
      e->len -= bytes;
      c->queued -= bytes;
      wshub_metric_sub(&c->server->m.queued, bytes);
      return;
    }
    bytes -= e->len;
    c->queued -= e->len;
    wshub_metric_sub(&c->server->m.queued, e->len);
    wshub_buf_unref(e->buf);
    c->wq_head++;
  }
}

/* The queue is empty: idle connections keep no queue array. */
static void conn_drained(wshub_conn_t *c) {
  conn_wq_give(c);
  conn_maybe_shutdown(c);
}

/* The first CONN_MAX_IOV queued entries as an iovec; *bytes: their sum. */
static size_t conn_iov(const wshub_conn_t *c, uv_buf_t *iov, size_t *bytes) {
  size_t n = c->wq_tail - c->wq_head, sum = 0;
  if (n > CONN_MAX_IOV)
    n = CONN_MAX_IOV;
  for (size_t i = 0; i < n; i++) {
    const wshub_wentry_t *e = &c->wq[c->wq_head + i];
    iov[i] = uv_buf_init(e->buf->data + e->off, (unsigned)e->len);
    sum += e->len;
  }
  *bytes = sum;
  return n;
}

void wshub_conn_flush(wshub_conn_t *c) {
  if (c->close_later) {
    wshub_conn_close(c);
    return;
  }
  if (c->state == WSHUB_CONN_CLOSING)
    return;
  if (c->tls != NULL) {
    conn_tls_flush(c);
    return;
  }
  if (c->wq_writing > 0) {
    /* The socket was full at the last attempt and still is: everything
     * queued is waiting for the peer. A peer that never reads is caught
     * here, however little was queued when its socket filled up. */
    conn_backlogged(c, c->queued);
    return;
  }
  if (c->wq_head == c->wq_tail) {
    conn_maybe_shutdown(c);
    return;
  }
  /* Most flushes fit in the socket buffer: write them now, with no request
   * and no callback a loop turn later. */
  uv_buf_t iov[CONN_MAX_IOV];
  size_t n, offered;
  int w;
  do { /* CONN_MAX_IOV entries at a time, until the socket is full */
    n = conn_iov(c, iov, &offered);
    w = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
    if (w < 0 && w != UV_EAGAIN) {
      wshub_conn_close(c);
      return;
    }
    if (w > 0) {
      wshub_metric_add(&c->server->m.bytes_out, (uint64_t)w);
      conn_consume(c, (size_t)w);
    }
    if (c->wq_head == c->wq_tail) {
      conn_drained(c);
      if (c->state == WSHUB_CONN_OPEN && c->proto && c->proto->on_written)
        c->proto->on_written(c);
      return;
    }
  } while (w > 0 && (size_t)w == offered);
  /* The socket is full. Only the first entry goes to uv_write, as the
   * wake-up: libuv copies a request's buffer array and retries the write
   * at once, both wasted on a full socket. When it completes, the socket
   * has room and the next flush try_writes the rest in one go. */
  n = 1;
  iov[0] = uv_buf_init(c->wq[c->wq_head].buf->data + c->wq[c->wq_head].off,
                       (unsigned)c->wq[c->wq_head].len);
  c->wreq.data = c;
  c->wq_writing = n;
  wshub_conn_hold(c);
  int r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, iov, (unsigned)n,
                   conn_on_write);
  if (r != 0) {
    c->wq_writing = 0;
    wshub_conn_close(c);
    wshub_conn_release(c);
    return;
  }
  size_t unsent = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
  for (size_t i = c->wq_head + n; i < c->wq_tail; i++)
    unsent += c->wq[i].len;
  conn_backlogged(c, unsent);
}

void wshub_conn_end(wshub_conn_t *c) {
  if (c->state != WSHUB_CONN_OPEN)
    return;
  c->state = WSHUB_CONN_ENDING;
  wshub_conn_read_stop(c);
  /* Bound the whole ending: flush + linger. */
  uv_timer_start(&c->timer, conn_on_timer, 10000, 0);
  if (c->wq_writing == 0 && c->wq_head == c->wq_tail)
    conn_maybe_shutdown(c);
  else
    wshub_server_mark_dirty(c->server, c);
}

void wshub_conn_close(wshub_conn_t *c) {
  if (c->state == WSHUB_CONN_CLOSING)
    return;
  c->state = WSHUB_CONN_CLOSING;
  wshub_conn_read_stop(c);
  uv_timer_stop(&c->timer);
  if (c->proto && c->proto->on_free)
    c->proto->on_free(c);
  c->proto = NULL;
  c->proto_data = NULL;
  wshub_server_conn_removed(c->server, c);
  uv_close((uv_handle_t *)&c->tcp, conn_on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_on_handle_closed);
}

void wshub_conn_close_later(wshub_conn_t *c) {
  if (c->state != WSHUB_CONN_OPEN)
    return;
  c->state = WSHUB_CONN_ENDING; /* no more sends */
  c->close_later = 1;
  wshub_conn_read_stop(c);
  wshub_server_mark_dirty(c->server, c);
}

size_t wshub_conn_mark(const wshub_conn_t *c) {
  return c->wq_tail;
}

void wshub_conn_truncate(wshub_conn_t *c, size_t mark) {
  size_t keep = c->wq_head + c->wq_writing;
  if (c->tls != NULL && c->tls->mid)
    keep++; /* partly encrypted: the rest must follow */
  while (c->wq_tail > mark && c->wq_tail > keep) {
    wshub_wentry_t *e = &c->wq[--c->wq_tail];
    c->queued -= e->len;
    wshub_metric_sub(&c->server->m.queued, e->len);
    wshub_buf_unref(e->buf);
  }
}

void wshub_conn_hold(wshub_conn_t *c) {
  c->holds++;
}

void wshub_conn_release(wshub_conn_t *c) {
  if (--c->holds > 0)
    return;
  /* Entries not written (dropped on close). */
  conn_release_written(c, c->wq_tail - c->wq_head);
  free(c->wq);
  wshub_tls_conn_free(c->tls);
  wshub_server_t *s = c->server;
  free(c);
  wshub_server_conn_freed(s);
}

static void conn_on_handle_closed(uv_handle_t *h) {
  wshub_conn_release(h->data);
}

int wshub_conn_write_now(wshub_conn_t *c, const void *p, size_t len) {
  if (c->state == WSHUB_CONN_CLOSING)
    return UV_EAGAIN;
  if (c->tls == NULL) {
    if (c->wq_writing > 0)
      return UV_EAGAIN; /* an entry is half-written */
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w > 0)
      wshub_metric_add(&c->server->m.bytes_out, (uint64_t)w);
    return w < 0 ? UV_EAGAIN : w;
  }
  /* One record, if nothing is on its way and no entry is half-encrypted. */
  wshub_tls_conn_t *t = c->tls;
  char out[1024];
  if (!t->ready || t->notified || conn_tls_busy(c) || t->mid ||
      len > sizeof(out) - 256 || wshub_tls_conn_write(t, p, len) != 0)
    return UV_EAGAIN;
  size_t n = wshub_tls_conn_take(t, out, sizeof(out));
  uv_buf_t b = uv_buf_init(out, (unsigned)n);
  int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (w > 0)
    wshub_metric_add(&c->server->m.bytes_out, (uint64_t)w);
  if (w < 0)
    return UV_EAGAIN;
  return (size_t)w == n ? (int)len : 0; /* a record cut short */
}

/* ---- TLS ---------------------------------------------------------------
 *
 * Reading: the ciphertext libuv read into the loop-wide buffer is copied
 * into the engine, then the buffer is reused for the plaintext, handed to
 * the protocol in as few calls as it fits in.
 *
 * Writing, at flush time: ciphertext left from an earlier attempt (`out`)
 * goes first; then what the engine holds (handshake messages, alerts,
 * records) is taken into the server's scratch buffer and try-written, and
 * only what the socket refuses is copied into `out`; then the queue is
 * encrypted, up to a scratch-full at a time, small entries gathered into
 * full records. Frames stay shared up to this point: framing is once per
 * message, encryption once per connection. When the socket is full, `out`
 * goes to one uv_write, the wake-up, and nothing more is encrypted until
 * it completes: a slow reader's backlog stays plaintext in the queue
 * (shared buffers) plus at most a scratch-full of ciphertext, and both
 * count against max_backlog. */

#define CONN_TLS_BATCH (WSHUB_TLS_SCRATCH - 4096) /* plaintext per round */

int wshub_conn_use_tls(wshub_conn_t *c, wshub_tls_t *tls) {
  c->tls = wshub_tls_conn_new(tls);
  return c->tls != NULL ? 0 : UV_ENOMEM;
}

/* Ciphertext not yet accepted by the socket. */
static int conn_tls_busy(const wshub_conn_t *c) {
  const wshub_tls_conn_t *t = c->tls;
  return t->writing || t->out_len > 0 || wshub_tls_conn_pending(t) > 0;
}

/* The handshake or a record failed: say so, send the alert if the socket
 * takes it now, and close. */
static void conn_tls_fail(wshub_conn_t *c, const char *why) {
  wshub_tls_conn_t *t = c->tls;
  wshub_log(c->server, WSHUB_LOG_INFO, "%s: TLS %s: %s", c->peer,
            t->ready ? "failed" : "handshake failed", why);
  if (!t->writing && t->out_len == 0) {
    char alert[256];
    size_t n = wshub_tls_conn_take(t, alert, sizeof(alert));
    uv_buf_t b = uv_buf_init(alert, (unsigned)n);
    if (n > 0)
      uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  }
  wshub_conn_close(c);
}

static void conn_tls_read(wshub_conn_t *c, size_t n) {
  wshub_tls_conn_t *t = c->tls;
  char *buf = c->server->readbuf;
  const size_t cap = sizeof(c->server->readbuf);
  if (wshub_tls_conn_feed(t, buf, n) != 0) {
    wshub_conn_close(c);
    return;
  }
  int r;
  do {
    size_t got = 0, k;
    while ((r = wshub_tls_conn_read(t, buf + got, cap - got, &k)) > 0 &&
           (got += k) < cap) {
    }
    if (!t->ready && wshub_tls_conn_done(t)) {
      t->ready = 1;
      char what[96];
      wshub_tls_conn_describe(t, what, sizeof(what));
      wshub_log(c->server, WSHUB_LOG_DEBUG, "%s: TLS handshake done: %s",
                c->peer, what);
    }
    if (got > 0 && c->state == WSHUB_CONN_OPEN && c->proto)
      c->proto->on_read(c, buf, got);
    if (c->state == WSHUB_CONN_CLOSING)
      return;
  } while (r > 0);
  if (r == WSHUB_TLS_CLOSED) {
    /* close_notify: the end of the peer's stream, like a FIN. */
    wshub_conn_read_stop(c);
    if (c->state == WSHUB_CONN_OPEN && c->proto && c->proto->on_eof)
      c->proto->on_eof(c, UV_EOF);
    else if (c->state == WSHUB_CONN_OPEN)
      wshub_conn_close(c);
  } else if (r < 0) {
    char why[128];
    wshub_tls_conn_why(why, sizeof(why));
    conn_tls_fail(c, why);
    return;
  }
  /* Handshake messages or tickets to send, or a queue that waited for the
   * handshake. */
  if (c->state != WSHUB_CONN_CLOSING &&
      (wshub_tls_conn_pending(t) > 0 || (t->ready && c->wq_head != c->wq_tail)))
    wshub_server_mark_dirty(c->server, c);
}

/* Encrypts up to `budget` bytes of the queue into the engine. */
static int conn_tls_encrypt(wshub_conn_t *c, size_t budget) {
  wshub_tls_conn_t *t = c->tls;
  char stage[WSHUB_TLS_RECORD];
  while (budget > 0 && c->wq_head != c->wq_tail) {
    wshub_wentry_t *e = &c->wq[c->wq_head];
    size_t rec = budget < WSHUB_TLS_RECORD ? budget : WSHUB_TLS_RECORD;
    const char *p;
    size_t n;
    if (e->len >= rec) {
      /* A record straight from a big entry. */
      p = e->buf->data + e->off;
      n = rec;
      t->mid = n < e->len;
      conn_consume(c, n);
    } else {
      /* Small entries gathered into one record. */
      n = 0;
      while (n < rec && c->wq_head != c->wq_tail) {
        e = &c->wq[c->wq_head];
        size_t k = e->len < rec - n ? e->len : rec - n;
        memcpy(stage + n, e->buf->data + e->off, k);
        n += k;
        t->mid = k < e->len;
        conn_consume(c, k);
      }
      p = stage;
    }
    if (wshub_tls_conn_write(t, p, n) != 0)
      return UV_EPROTO;
    budget -= n;
  }
  return 0;
}

static void conn_tls_on_write(uv_write_t *req, int status) {
  wshub_conn_t *c = req->data;
  wshub_tls_conn_t *t = c->tls;
  t->writing = 0;
  if (status == 0)
    wshub_metric_add(&c->server->m.bytes_out, t->out_len);
  t->out_off = t->out_len = 0;
  if (conn_write_ended(c, status))
    return;
  /* The socket has room again: the next flush writes what waits (or
   * finds the queue drained). */
  wshub_server_mark_dirty(c->server, c);
  conn_write_next(c);
}

/* Keeps out[off..off+len) of ciphertext the socket refused. */
static int conn_tls_keep(wshub_tls_conn_t *t, const char *p, size_t len) {
  if (t->out_off > 0) {
    memmove(t->out, t->out + t->out_off, t->out_len);
    t->out_off = 0;
  }
  if (t->out_len + len > t->out_cap) {
    size_t cap = t->out_len + len;
    char *o = realloc(t->out, cap);
    if (o == NULL)
      return UV_ENOMEM;
    t->out = o;
    t->out_cap = cap;
  }
  memcpy(t->out + t->out_len, p, len);
  t->out_len += len;
  return 0;
}

static void conn_tls_flush(wshub_conn_t *c) {
  wshub_tls_conn_t *t = c->tls;
  uv_stream_t *st = (uv_stream_t *)&c->tcp;
  if (t->writing) {
    /* Still full since the last attempt: everything waiting is the
     * peer's to take (see wshub_conn_flush). */
    conn_backlogged(c, c->queued + t->out_len + wshub_tls_conn_pending(t));
    return;
  }
  for (;;) {
    if (t->out_len > 0) {
      uv_buf_t b = uv_buf_init(t->out + t->out_off, (unsigned)t->out_len);
      int w = uv_try_write(st, &b, 1);
      if (w < 0 && w != UV_EAGAIN) {
        wshub_conn_close(c);
        return;
      }
      if (w > 0) {
        t->out_off += (size_t)w;
        t->out_len -= (size_t)w;
        wshub_metric_add(&c->server->m.bytes_out, (uint64_t)w);
      }
      if (t->out_len > 0)
        break; /* full */
      t->out_off = 0;
      continue;
    }
    size_t n =
        wshub_tls_conn_take(t, c->server->tls_scratch, WSHUB_TLS_SCRATCH);
    if (n > 0) {
      uv_buf_t b = uv_buf_init(c->server->tls_scratch, (unsigned)n);
      int w = uv_try_write(st, &b, 1);
      if (w < 0 && w != UV_EAGAIN) {
        wshub_conn_close(c);
        return;
      }
      size_t done = w > 0 ? (size_t)w : 0;
      wshub_metric_add(&c->server->m.bytes_out, done);
      if (done < n) {
        if (conn_tls_keep(t, c->server->tls_scratch + done, n - done) != 0) {
          wshub_conn_close(c);
          return;
        }
        break; /* full */
      }
      continue;
    }
    if (c->wq_head == c->wq_tail)
      break; /* all out */
    if (!t->ready) {
      /* Nothing can be said before the handshake; an ending connection
       * will not finish it (it no longer reads). */
      if (c->state != WSHUB_CONN_OPEN)
        wshub_conn_close(c);
      return;
    }
    if (conn_tls_encrypt(c, CONN_TLS_BATCH) != 0) {
      wshub_conn_close(c);
      return;
    }
  }
  if (t->out_len == 0) {
    /* Everything went (the queue is empty: the loop ends no other way). */
    free(t->out);
    t->out = NULL;
    t->out_cap = 0;
    conn_drained(c);
    if (c->state == WSHUB_CONN_OPEN && c->proto && c->proto->on_written)
      c->proto->on_written(c);
    return;
  }
  /* The socket is full: `out` is the wake-up. */
  uv_buf_t b = uv_buf_init(t->out + t->out_off, (unsigned)t->out_len);
  c->wreq.data = c;
  t->writing = 1;
  wshub_conn_hold(c);
  if (uv_write(&c->wreq, st, &b, 1, conn_tls_on_write) != 0) {
    t->writing = 0;
    wshub_conn_close(c);
    wshub_conn_release(c);
    return;
  }
  conn_backlogged(c, uv_stream_get_write_queue_size(st) + c->queued +
                         wshub_tls_conn_pending(t));
}
