/* http.h — HTTP/1.1 on a connection: llhttp callbacks, request collection
 * with limits, keep-alive and pipelining, timeouts, response writing and
 * routing (WebSocket upgrade, else static files).
 *
 * An wshub_http_t is the proto_data of a connection while it speaks HTTP;
 * http.c allocates and frees it. A responder that works asynchronously
 * (static.c) borrows it through the functions below and is told through
 * wshub_static_detach() if the connection goes away first.
 */
#ifndef WSHUB_HTTP_H
#define WSHUB_HTTP_H

#include <stdint.h>

#include "buf.h"
#include "conn.h"
#include "request.h"

typedef struct wshub_http_s wshub_http_t;

/* Starts speaking HTTP on a freshly accepted connection. */
int wshub_http_attach(wshub_conn_t *c);

wshub_conn_t *wshub_http_conn(const wshub_http_t *h);
/* 1 when the current request is HEAD (no body may be sent). */
int wshub_http_is_head(const wshub_http_t *h);

/* Queues the status line, the standard headers (Server, Date, Connection
 * as needed), `extra` (complete "Name: value\r\n" lines, may be NULL or
 * ""), and Content-Length: content_length. */
int wshub_http_send_head(wshub_http_t *h, int status, const char *extra,
                         uint64_t content_length);
/* The response has been queued completely: continue with the next
 * (pipelined) request, or end the connection. */
void wshub_http_finish(wshub_http_t *h);
/* A complete error response: text/plain body "<status> <reason>\n" plus
 * `detail` and a newline when detail is not NULL. `close` forces
 * Connection: close. Calls wshub_http_finish(). */
void wshub_http_error(wshub_http_t *h, int status, const char *detail,
                      int close, const char *extra);

const char *wshub_http_reason(int status);

/* The request being answered. */
const wshub_request_t *wshub_http_request(const wshub_http_t *h);

/* Held responses. Inside on_request, wshub_http_hold() keeps the request
 * open: the holder answers it later with wshub_http_held_respond() (long
 * polling), or turns it into a stream with wshub_http_stream_start(), sends
 * with wshub_http_stream_send() and ends with wshub_http_stream_end() (Server-
 * Sent Events). h stays valid for the holder until it answers or ends, or
 * until on_gone: the connection closed (peer gone, error, slow consumer) or
 * the server shuts down (then a held request is answered 204 and a stream
 * ends after what it queued — after on_gone returns). on_timeout: the
 * hold's timer (timeout_ms, 0 for none) fired; the holder should answer.
 * Streams use the timer for heartbeats instead: a ": ping" comment every
 * heartbeat_ms. No callback runs after the holder answered or ended. */
typedef struct {
  void (*on_gone)(wshub_http_t *h, void *arg);
  void (*on_timeout)(wshub_http_t *h, void *arg);
} wshub_http_hold_cb_t;

int wshub_http_hold(wshub_http_t *h, const wshub_http_hold_cb_t *cb, void *arg,
                    uint64_t timeout_ms);
int wshub_http_held_respond(wshub_http_t *h, int status,
                            const char *content_type, const char *headers,
                            const void *body, size_t len);
/* The head, with Connection: close and no length (the body ends with the
 * connection). */
int wshub_http_stream_start(wshub_http_t *h, int status,
                            const char *content_type, const char *headers,
                            uint64_t heartbeat_ms);
int wshub_http_stream_send(wshub_http_t *h, wshub_buf_t *b, size_t off,
                           size_t len);
void wshub_http_stream_end(wshub_http_t *h);

#endif
