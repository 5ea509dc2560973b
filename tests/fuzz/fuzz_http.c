/* fuzz_http.c — libFuzzer target for wshub's HTTP request path.
 *
 * Each input is the raw byte stream of one client connection to a real
 * wshub server on 127.0.0.1: llhttp's callbacks, the header/body limits,
 * keep-alive and pipelining, routing (an application hook, WebSocket
 * upgrades on /ws, else static files from a small public directory served
 * through the threadpool). Inputs of odd length are written 16 bytes per
 * loop turn, so requests also arrive split across reads. The client
 * half-closes after its last byte and reads every response to the end.
 *
 * The input also goes straight to wshub_static_resolve() and
 * wshub_static_mime(), checking their documented contracts.
 *
 * The harness state is the one static below: libFuzzer's entry points take
 * no user pointer. It owns the loop and the public directory; the server is
 * created and destroyed for each input (fuzz_harness.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_harness.h"
#include "static.h"
#include "wshub.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fz_once(1);
  return 0;
}

static int fuzz_http_has_prefix(const wshub_request_t *r, const char *p) {
  size_t n = strlen(p);
  return r->target_len >= n && memcmp(r->target, p, n) == 0;
}

/* The application hook: /hook echoes the body, /hook/none claims the
 * request without answering (→ 500), /hook/twice answers twice (the second
 * must be refused); everything else goes on to static files. It also
 * checks what the server promises about every request it passes on. */
static int fuzz_http_on_request(wshub_response_t *res,
                                const wshub_request_t *req, void *user) {
  (void)user;
  if (req->http_major != 1)
    abort(); /* refused with 400 before routing */
  size_t hosts = 0;
  for (size_t i = 0; i < req->nheaders; i++)
    if (req->headers[i].name_len == 4 &&
        strncasecmp(req->headers[i].name, "host", 4) == 0)
      hosts++;
  if (hosts > 1 || (req->http_minor >= 1 && hosts != 1))
    abort(); /* exactly one Host in HTTP/1.1, at most one in 1.0 */
  if (req->body_len > 1024)
    abort(); /* max_body */
  if (req->nheaders > 20)
    abort(); /* max_headers */
  size_t hlen;
  if (wshub_request_header(req, "host", &hlen) == NULL && hosts > 0)
    abort();
  if (!fuzz_http_has_prefix(req, "/hook"))
    return 0;
  if (fuzz_http_has_prefix(req, "/hook/none"))
    return 1;
  int r = wshub_respond(res, 200, "text/plain", "X-Fuzz: 1\r\n", req->body,
                        req->body_len);
  if (r != 0 && r != UV_ECANCELED && r != UV_ENOMEM)
    abort();
  if (fuzz_http_has_prefix(req, "/hook/twice") &&
      wshub_respond(res, 200, NULL, NULL, "x", 1) != UV_EINVAL)
    abort(); /* one response per request */
  return 1;
}

/* The pure part of static files, on the raw input as a request-target. */
static void fuzz_http_resolve(const uint8_t *data, size_t size) {
  static const size_t caps[] = {1, 2, 16, 4096};
  char out[4096];
  for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
    memset(out, 'Z', sizeof(out));
    int n = wshub_static_resolve((const char *)data, size, out, caps[k]);
    if (n == UV_EINVAL || n == UV_ENOENT || n == UV_ENAMETOOLONG)
      continue;
    if (n < 0 || (size_t)n >= caps[k] || out[n] != '\0' ||
        strlen(out) != (size_t)n || out[0] == '/')
      abort(); /* NUL-terminated, fits, relative */
    /* No "..", no dot segment other than .well-known, no empty segment. */
    for (const char *seg = out; *seg != '\0';) {
      const char *end = strchr(seg, '/');
      size_t len = end ? (size_t)(end - seg) : strlen(seg);
      if (len == 0 || (seg[0] == '.' &&
                       !(len == 11 && memcmp(seg, ".well-known", 11) == 0)))
        abort();
      if (end == NULL)
        break;
      seg = end + 1;
    }
    const char *type = wshub_static_mime(out);
    if (type == NULL || type[0] == '\0')
      abort();
  }
  /* MIME types of the raw bytes as a path (up to a NUL). */
  size_t n = size < sizeof(out) - 1 ? size : sizeof(out) - 1;
  memcpy(out, data, n);
  out[n] = '\0';
  if (wshub_static_mime(out) == NULL)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_t *f = fz_once(1);
  fuzz_http_resolve(data, size);

  static const char *const ws_paths[] = {"/ws"};
  static const char *const protocols[] = {"chat", "superchat"};
  wshub_config_t cfg;
  fz_config_init(&cfg);
  cfg.public_dir = fz_public_dir(f);
  cfg.max_header_bytes = 2048;
  cfg.max_headers = 20;
  cfg.max_body = 1024;
  cfg.max_message = 4096;
  cfg.ws_paths = ws_paths;
  cfg.ws_npaths = 1;
  cfg.protocols = protocols;
  cfg.nprotocols = 2;
  cfg.on_request = fuzz_http_on_request;
  fz_start(f, &cfg);

  fz_script_t s = {.pre = data, .pre_len = size, .chunk = size % 2 ? 16 : 0};
  fz_connect(f, &s);
  fz_finish(f);
  return 0;
}
