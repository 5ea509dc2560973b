/* conn.h — one TCP connection, independent of the protocol spoken on it.
 *
 * A connection owns its uv_tcp_t, one uv_timer_t, and an ordered write
 * queue of references to wshub_buf_t buffers. Protocol layers (http.c,
 * ws.c) plug in through wshub_proto_t and keep their own state in
 * conn->proto_data, which they allocate and free (in on_free).
 *
 * Writes are corked: wshub_conn_send() only queues and marks the connection
 * dirty; the server flushes every dirty connection once per loop turn with
 * one uv_write of all its queued buffers (see server.c). Bytes are written
 * in exactly the order they were queued.
 *
 * Lifetime: a connection is freed once its handles are closed and nobody
 * holds it (wshub_conn_hold/release, used across asynchronous file I/O).
 * After wshub_conn_close() the protocol layer gets on_free and must not
 * touch the connection again.
 *
 * TLS: a connection accepted on a TLS listener carries an engine (tls.h).
 * Protocol layers see plaintext only, both ways: ciphertext read is
 * decrypted before on_read, and the queue (shared plaintext buffers, one
 * frame for every receiver) is encrypted at flush time, per connection. A
 * connection without TLS pays one pointer test on each path.
 */
#ifndef WSHUB_CONN_H
#define WSHUB_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "wshub.h"

typedef struct wshub_server_s wshub_server_t;
typedef struct wshub_conn_s wshub_conn_t;
typedef struct wshub_tls_conn_s wshub_tls_conn_t;

typedef struct {
  /* Bytes read; `data` is the loop-wide read buffer: copy what you keep. */
  void (*on_read)(wshub_conn_t *c, const char *data, size_t len);
  /* The peer ended its side or the read failed; the layer decides what to
   * do (usually wshub_conn_close). */
  void (*on_eof)(wshub_conn_t *c, int err);
  /* A write completed; queued bytes may now be lower. Optional. */
  void (*on_written)(wshub_conn_t *c);
  /* The connection timer fired. Optional. */
  void (*on_timer)(wshub_conn_t *c);
  /* The server is shutting down: finish politely (optional; default
   * closes at once). */
  void (*on_shutdown)(wshub_conn_t *c);
  /* More than max_backlog bytes are waiting that the peer has not taken:
   * a slow consumer. Called from the flush; the layer must close (default:
   * close at once). */
  void (*on_backlog)(wshub_conn_t *c);
  /* Release proto_data. Called exactly once, when the connection closes. */
  void (*on_free)(wshub_conn_t *c);
} wshub_proto_t;

typedef struct {
  wshub_buf_t *buf;
  size_t off;
  size_t len;
} wshub_wentry_t;

enum {
  WSHUB_CONN_OPEN = 0,
  WSHUB_CONN_ENDING,  /* flushing, then shutdown(SHUT_WR) and linger */
  WSHUB_CONN_CLOSING, /* handles closing; nothing more happens */
};

struct wshub_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  wshub_server_t *server;
  wshub_conn_t *prev, *next; /* server->conns */
  wshub_conn_t *dirty_next;  /* server->dirty */
  const wshub_proto_t *proto;
  void *proto_data;

  wshub_wentry_t *wq; /* ring-less queue: live entries are [wq_head, wq_tail) */
  size_t wq_head, wq_tail, wq_cap;
  size_t wq_writing; /* entries in the uv_write in flight, from wq_head */
  size_t queued;     /* bytes queued and not yet written */

  unsigned holds; /* reasons not to free yet (handles, async work) */
  uint8_t state;
  uint8_t dirty;
  uint8_t reading;
  uint8_t lingering;
  uint8_t close_later;
  uint8_t shutting;      /* uv_shutdown requested */
  uint8_t kind;          /* WSHUB_TR_* (metrics.h), for the connections gauge */
  uint8_t ops;           /* accepted on an operations listener */
  char peer[56];         /* "ip:port", for logs */
  void *ip_count;        /* per-address counter of the server (server.c) */
  wshub_tls_conn_t *tls; /* NULL: plain TCP */
};

/* Accepts a pending connection on `listener` into a new conn using
 * `proto`; the protocol's init runs via proto_init. Returns 0 or UV_E*. */
int wshub_conn_accept(wshub_server_t *s, uv_stream_t *listener,
                      wshub_conn_t **out);

/* Queues buf[off..off+len) (takes its own reference). UV_ECANCELED if the
 * connection is closing or ending, UV_ENOMEM, or UV_ENOBUFS as a runaway
 * guard past four times max_backlog. The real backlog check is made when
 * writing (see on_backlog): bytes queued during one loop turn do not count
 * until the socket has had its chance to take them. */
int wshub_conn_send(wshub_conn_t *c, wshub_buf_t *buf, size_t off, size_t len);
/* Same for the whole buffer. */
int wshub_conn_send_buf(wshub_conn_t *c, wshub_buf_t *buf);
/* Copies p[0..len) into a new buffer and queues it. */
int wshub_conn_send_copy(wshub_conn_t *c, const void *p, size_t len);

/* Writes the queue now: uv_try_write in batches of up to 256 entries until
 * the socket is full, then one uv_write of the head entry to be woken when
 * it has room again. Called by the server's flush; protocol layers just
 * send. */
void wshub_conn_flush(wshub_conn_t *c);

/* Finishes writing what is queued, half-closes, reads and discards until
 * the peer closes (at most a couple of seconds), then closes. */
void wshub_conn_end(wshub_conn_t *c);
/* Closes now; queued bytes are dropped. Idempotent. */
void wshub_conn_close(wshub_conn_t *c);
/* Closes at this loop turn's flush instead of now (safe while the caller
 * walks lists the close would change). Sending stops at once. */
void wshub_conn_close_later(wshub_conn_t *c);

/* A position in the write queue, and dropping everything queued after it
 * (before it was flushed): lets a response be replaced, e.g. a 101 that
 * the application refuses. */
size_t wshub_conn_mark(const wshub_conn_t *c);
void wshub_conn_truncate(wshub_conn_t *c, size_t mark);

/* Speaks TLS with the context `tls` from now on (right after accept, before
 * anything is read or queued). 0 or UV_ENOMEM. */
int wshub_conn_use_tls(wshub_conn_t *c, wshub_tls_t *tls);

/* Writes p[0..len) to the peer at once, ahead of what is queued and not
 * yet started, if the stream is between queued entries and the socket
 * takes it now (with TLS: as one record, handshake finished). For a last
 * word before wshub_conn_close_later (which drops the queue). Returns len
 * when all of it went, less when the socket took only part (with TLS: 0
 * for a record cut short), or UV_EAGAIN when it could not be said. */
int wshub_conn_write_now(wshub_conn_t *c, const void *p, size_t len);

void wshub_conn_read_start(wshub_conn_t *c);
void wshub_conn_read_stop(wshub_conn_t *c);
/* Arms the connection timer (ms > 0) or stops it (0). */
void wshub_conn_timer(wshub_conn_t *c, uint64_t ms);

void wshub_conn_hold(wshub_conn_t *c);
void wshub_conn_release(wshub_conn_t *c);

/* Frees the server's spare write-queue arrays (at server teardown). */
void wshub_conn_pool_free(wshub_server_t *s);

static inline int wshub_conn_is_open(const wshub_conn_t *c) {
  return c->state == WSHUB_CONN_OPEN;
}

#endif
