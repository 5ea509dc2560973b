/* conn.c — one TCP connection: reads into the loop-wide buffer, an ordered
 * and corked write queue of shared buffers, half-close with lingering, and
 * a lifetime that survives asynchronous work (see conn.h). */
#include "conn.h"

#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "server.h"

#define CONN_LINGER_MS 2000
#define CONN_MAX_IOV 256

static void conn_on_handle_closed(uv_handle_t *h);

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
  c->holds = 1; /* the tcp handle */
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

static void conn_on_write(uv_write_t *req, int status) {
  wshub_conn_t *c = req->data;
  if (status == 0)
    for (size_t i = 0; i < c->wq_writing; i++)
      wshub_metric_add(&c->server->m.bytes_out, c->wq[c->wq_head + i].len);
  conn_release_written(c, c->wq_writing);
  c->wq_writing = 0;
  if (c->state == WSHUB_CONN_CLOSING) {
    wshub_conn_release(c);
    return;
  }
  if (status != 0) {
    wshub_conn_close(c);
    wshub_conn_release(c);
    return;
  }
  if (c->wq_head != c->wq_tail) {
    /* The rest goes at the next flush, which also judges the backlog by
     * what the socket then leaves unsent (the queue here may hold far more
     * than the one entry that was out: that is no sign of a slow peer). */
    wshub_server_mark_dirty(c->server, c);
  } else {
    conn_drained(c);
  }
  if (c->state == WSHUB_CONN_OPEN && c->proto && c->proto->on_written)
    c->proto->on_written(c);
  wshub_conn_release(c);
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
  while (c->wq_tail > mark && c->wq_tail > c->wq_head + c->wq_writing) {
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
  free(c);
}

static void conn_on_handle_closed(uv_handle_t *h) {
  wshub_conn_release(h->data);
}
