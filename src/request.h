/* request.h — the parsed HTTP request as the rest of wshub sees it.
 *
 * http.c fills a wshub_request_t from llhttp callbacks; every pointer in it
 * points into the connection's own header buffer and stays valid only until
 * the response to that request has been started. Readers (router, static
 * files, WebSocket handshake) borrow it and never free anything in it.
 */
#ifndef WSHUB_REQUEST_H
#define WSHUB_REQUEST_H

#include <stddef.h>

typedef struct {
  const char *name;
  size_t name_len;
  const char *value; /* leading/trailing whitespace already trimmed */
  size_t value_len;
} wshub_header_t;

typedef struct {
  int method; /* llhttp_method_t, e.g. HTTP_GET == 1 */
  int http_major;
  int http_minor;
  const char *target; /* raw request-target, not decoded */
  size_t target_len;
  const wshub_header_t *headers;
  size_t nheaders;
  const char *body;
  size_t body_len;
  int upgrade;    /* llhttp saw Connection: upgrade + Upgrade: ... */
  int keep_alive; /* llhttp_should_keep_alive() after the message */
} wshub_request_t;

/* The value of the first header called `name` (case-insensitive), or NULL.
 * Its length goes to *len when len is not NULL. */
const char *wshub_request_header(const wshub_request_t *req, const char *name,
                                 size_t *len);

/* 1 if the comma-separated header value contains `token` as one of its
 * elements (case-insensitive, optional whitespace around commas), else 0. */
int wshub_header_has_token(const char *value, size_t len, const char *token);

#endif
