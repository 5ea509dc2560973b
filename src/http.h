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

#endif
