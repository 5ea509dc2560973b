/* unit_req.h — building a parsed request (request.h) in unit tests.
 *
 * Requests are made from "Name: value" lines, values trimmed the way
 * http.c's parser trims them. The request points into the caller's
 * req_store_t and into the lines, which must outlive it.
 */
#ifndef WSHUB_UNIT_REQ_H
#define WSHUB_UNIT_REQ_H

#include <string.h>

#include "request.h"

#define MAX_LINES 10

typedef struct {
  wshub_header_t headers[MAX_LINES];
  wshub_request_t req;
} req_store_t;

static inline int is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* Builds a request from NULL-terminated "Name: value" lines. */
static inline const wshub_request_t *req_build(req_store_t *s, int method,
                                               int major, int minor,
                                               const char *const *lines) {
  size_t n = 0;
  memset(s, 0, sizeof(*s));
  for (; n < MAX_LINES && lines[n] != NULL; n++) {
    const char *line = lines[n];
    const char *colon = strchr(line, ':');
    const char *v = colon + 1;
    const char *end = line + strlen(line);
    while (v < end && is_ows(*v))
      v++;
    while (end > v && is_ows(end[-1]))
      end--;
    s->headers[n].name = line;
    s->headers[n].name_len = (size_t)(colon - line);
    s->headers[n].value = v;
    s->headers[n].value_len = (size_t)(end - v);
  }
  s->req.method = method;
  s->req.http_major = major;
  s->req.http_minor = minor;
  s->req.target = "/ws";
  s->req.target_len = 3;
  s->req.headers = s->headers;
  s->req.nheaders = n;
  s->req.upgrade = 1;
  return &s->req;
}

#endif
