/* tls.h — TLS (OpenSSL) for connections: contexts loaded from PEM files,
 * and a per-connection engine over memory BIOs that the connection drives.
 *
 * The context, wshub_tls_t (public, wshub.h), is an OpenSSL SSL_CTX with
 * wshub's settings (TLS 1.2 and 1.3 only, ECDHE + AEAD cipher suites for
 * 1.2, server preference, no compression, no renegotiation, no session
 * cache: tickets only). It is reference counted by OpenSSL: a server holds
 * one reference to its current context and every TLS connection holds one
 * through its SSL object, so swapping a server's context (a certificate
 * reload) leaves established connections on the old one until they end.
 *
 * The engine, wshub_tls_conn_t, owns one SSL object and its two memory
 * BIOs; it never touches a socket. conn.c feeds it the ciphertext libuv
 * read, takes plaintext out for the protocol layer, hands it plaintext from
 * the write queue at flush time and takes the ciphertext to write. The
 * `out` buffer and the flags below are conn.c's bookkeeping of that
 * ciphertext (see conn.c); tls.c only frees the buffer.
 */
#ifndef WSHUB_TLS_H
#define WSHUB_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "wshub.h"

typedef struct ssl_st SSL;
typedef struct bio_st BIO;

/* A TLS record's largest plaintext. */
#define WSHUB_TLS_RECORD 16384

typedef struct wshub_tls_conn_s {
  SSL *ssl;
  BIO *wbio; /* ciphertext produced, not yet taken */
  /* Ciphertext taken from wbio that the socket has not accepted yet. */
  char *out;
  size_t out_off, out_len, out_cap;
  uint8_t writing;  /* a uv_write of out is in flight */
  uint8_t mid;      /* the queue's head entry is partly encrypted */
  uint8_t notified; /* close_notify produced */
  uint8_t ready;    /* handshake finished (and logged) */
} wshub_tls_conn_t;

/* wshub_tls_conn_read's results besides bytes and errors. */
#define WSHUB_TLS_WANT 0      /* needs more ciphertext */
#define WSHUB_TLS_CLOSED (-1) /* the peer sent close_notify */

/* A new engine in server (accept) state, or NULL (out of memory). */
wshub_tls_conn_t *wshub_tls_conn_new(wshub_tls_t *tls);
void wshub_tls_conn_free(wshub_tls_conn_t *t);

/* Gives the engine ciphertext read from the peer (copied). 0 or UV_ENOMEM. */
int wshub_tls_conn_feed(wshub_tls_conn_t *t, const void *data, size_t len);
/* Decrypts into buf[0..cap): > 0 bytes were stored in *got (1), or
 * WSHUB_TLS_WANT, WSHUB_TLS_CLOSED, or UV_EPROTO (handshake or record
 * failure: see wshub_tls_conn_why). Drives the handshake. */
int wshub_tls_conn_read(wshub_tls_conn_t *t, char *buf, size_t cap,
                        size_t *got);
/* Encrypts p[0..len) (the handshake must be finished). 0 or UV_EPROTO. */
int wshub_tls_conn_write(wshub_tls_conn_t *t, const void *p, size_t len);
/* Bytes of ciphertext waiting in the engine. */
size_t wshub_tls_conn_pending(const wshub_tls_conn_t *t);
/* Moves up to cap bytes of that ciphertext into dst; returns how many. */
size_t wshub_tls_conn_take(wshub_tls_conn_t *t, char *dst, size_t cap);
/* 1 once the handshake is finished. */
int wshub_tls_conn_done(const wshub_tls_conn_t *t);
/* Produces close_notify (only once the handshake is finished). */
void wshub_tls_conn_shutdown(wshub_tls_conn_t *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" of a finished handshake. */
void wshub_tls_conn_describe(const wshub_tls_conn_t *t, char *buf, size_t len);
/* Why the last read failed (OpenSSL's reason, this thread's error queue),
 * e.g. "wrong version number", "http request", "no shared cipher". */
void wshub_tls_conn_why(char *buf, size_t len);

#endif
