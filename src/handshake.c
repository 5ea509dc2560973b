/* handshake.c — the server side of the RFC 6455 §4.2 opening handshake.
 *
 * Checks an Upgrade request (§4.2.1), picks a subprotocol, computes
 * Sec-WebSocket-Accept and writes the 101 response head (§4.2.2). The
 * request and the configured protocol strings are borrowed; results go
 * only into the caller's wshub_handshake_t and buffers. Reasons are static
 * strings. SHA-1 and base64 are libcrypto's; nothing here logs or touches a
 * socket.
 */
/* uv.h needs POSIX types (pthread_rwlock_t) that strict -std=c11 hides. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "handshake.h"

#include <openssl/evp.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define HANDSHAKE_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define HANDSHAKE_HTTP_GET 1 /* llhttp's HTTP_GET */
#define HANDSHAKE_KEY_LEN 24 /* base64 of 16 bytes, with "==" */
#define HANDSHAKE_KEY_BYTES 16

int wshub_handshake_accept_key(const char *key, size_t key_len,
                               char out[WSHUB_ACCEPT_LEN + 1]) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_MD_CTX *ctx;
  int ok;

  if (key == NULL || key_len == 0)
    return UV_EINVAL;
  /* Streaming rather than one EVP_Digest call over a joined copy: the key
   * may be any length, and no buffer has to be sized for it. */
  ctx = EVP_MD_CTX_new();
  if (ctx == NULL)
    return UV_ENOMEM;
  ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
       EVP_DigestUpdate(ctx, key, key_len) == 1 &&
       EVP_DigestUpdate(ctx, HANDSHAKE_GUID, sizeof(HANDSHAKE_GUID) - 1) == 1 &&
       EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || digest_len != 20)
    return UV_EINVAL;
  /* 20 bytes encode to exactly 28 characters; EncodeBlock adds the NUL. */
  if (EVP_EncodeBlock((unsigned char *)out, digest, 20) != WSHUB_ACCEPT_LEN)
    return UV_EINVAL;
  return 0;
}

static int handshake_is_b64(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 1 if key is 24 characters of base64 that decode to exactly 16 bytes.
 * The alphabet and the padding are checked here because EVP_DecodeBlock
 * skips surrounding whitespace and reports a length that counts the
 * bytes the padding stands for. */
static int handshake_key_ok(const char *key, size_t len) {
  unsigned char decoded[HANDSHAKE_KEY_LEN]; /* 24 chars → at most 18 bytes */
  size_t pads = 0;
  int n;

  if (len != HANDSHAKE_KEY_LEN)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c == '=') {
      pads++;
    } else if (pads > 0 || !handshake_is_b64(c)) {
      return 0; /* bad character, or data after padding */
    }
  }
  if (pads != 2)
    return 0;
  n = EVP_DecodeBlock(decoded, (const unsigned char *)key, (int)len);
  if (n < 0)
    return 0;
  return (size_t)n - pads == HANDSHAKE_KEY_BYTES;
}

static int handshake_fail(wshub_handshake_t *out, int status,
                          const char *reason) {
  out->status = status;
  out->reason = reason;
  return UV_EINVAL;
}

static int handshake_is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* Looks for one client-offered token in the configured list. */
static const char *handshake_match(const char *tok, size_t len,
                                   const char *const *protocols,
                                   size_t nprotocols) {
  for (size_t j = 0; j < nprotocols; j++) {
    const char *p = protocols[j];
    if (p != NULL && strlen(p) == len && memcmp(p, tok, len) == 0)
      return p;
  }
  return NULL;
}

/* The first token of a comma list (OWS around elements) that is configured,
 * or NULL. */
static const char *handshake_pick_in(const char *v, size_t len,
                                     const char *const *protocols,
                                     size_t nprotocols) {
  size_t i = 0;
  while (i < len) {
    size_t start, end;
    const char *hit;
    while (i < len && (handshake_is_ows(v[i]) || v[i] == ','))
      i++;
    start = i;
    while (i < len && v[i] != ',')
      i++;
    end = i;
    while (end > start && handshake_is_ows(v[end - 1]))
      end--;
    if (end > start) {
      hit = handshake_match(v + start, end - start, protocols, nprotocols);
      if (hit != NULL)
        return hit;
    }
  }
  return NULL;
}

/* 1 if the header is called `name` (ASCII case-insensitive). */
static int handshake_name_is(const wshub_header_t *h, const char *name) {
  size_t n = strlen(name);
  if (h->name_len != n)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char a = (unsigned char)h->name[i], b = (unsigned char)name[i];
    if (a >= 'A' && a <= 'Z')
      a = (unsigned char)(a + ('a' - 'A'));
    if (b >= 'A' && b <= 'Z')
      b = (unsigned char)(b + ('a' - 'A'));
    if (a != b)
      return 0;
  }
  return 1;
}

/* Walks every Sec-WebSocket-Protocol header in request order. */
static const char *handshake_pick(const wshub_request_t *req,
                                  const char *const *protocols,
                                  size_t nprotocols) {
  if (protocols == NULL || nprotocols == 0)
    return NULL;
  for (size_t i = 0; i < req->nheaders; i++) {
    const wshub_header_t *h = &req->headers[i];
    const char *hit;
    if (!handshake_name_is(h, "Sec-WebSocket-Protocol"))
      continue;
    hit = handshake_pick_in(h->value, h->value_len, protocols, nprotocols);
    if (hit != NULL)
      return hit;
  }
  return NULL;
}

static size_t handshake_count(const wshub_request_t *req, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < req->nheaders; i++)
    n += (size_t)handshake_name_is(&req->headers[i], name);
  return n;
}

int wshub_handshake_check(const wshub_request_t *req,
                          const char *const *protocols, size_t nprotocols,
                          wshub_handshake_t *out) {
  const char *v;
  size_t len = 0;

  out->status = 400;
  out->reason = "";
  out->accept[0] = '\0';
  out->protocol = NULL;
  out->extensions = NULL;

  if (req->method != HANDSHAKE_HTTP_GET)
    return handshake_fail(out, 400, "method must be GET");
  if (req->http_major < 1 || (req->http_major == 1 && req->http_minor < 1))
    return handshake_fail(out, 400, "HTTP/1.1 required");
  if (wshub_request_header(req, "Host", NULL) == NULL)
    return handshake_fail(out, 400, "missing Host");
  v = wshub_request_header(req, "Upgrade", &len);
  if (v == NULL || !wshub_header_has_token(v, len, "websocket"))
    return handshake_fail(out, 400, "Upgrade: websocket required");
  v = wshub_request_header(req, "Connection", &len);
  if (v == NULL || !wshub_header_has_token(v, len, "upgrade"))
    return handshake_fail(out, 400, "Connection: upgrade required");
  v = wshub_request_header(req, "Sec-WebSocket-Key", &len);
  if (v == NULL)
    return handshake_fail(out, 400, "missing Sec-WebSocket-Key");
  /* RFC 6455 §11.3.1: the key MUST NOT appear more than once. */
  if (handshake_count(req, "Sec-WebSocket-Key") > 1)
    return handshake_fail(out, 400, "duplicate Sec-WebSocket-Key");
  if (!handshake_key_ok(v, len))
    return handshake_fail(out, 400,
                          "Sec-WebSocket-Key must be base64 of 16 bytes");
  {
    const char *ver;
    size_t ver_len = 0;
    ver = wshub_request_header(req, "Sec-WebSocket-Version", &ver_len);
    if (ver == NULL || ver_len != 2 || memcmp(ver, "13", 2) != 0 ||
        handshake_count(req, "Sec-WebSocket-Version") > 1)
      return handshake_fail(out, 426, "Sec-WebSocket-Version must be 13");
  }
  if (wshub_handshake_accept_key(v, len, out->accept) != 0)
    return handshake_fail(out, 500, "cannot compute Sec-WebSocket-Accept");
  out->protocol = handshake_pick(req, protocols, nprotocols);
  out->status = 101;
  out->reason = "";
  return 0;
}

/* Appends n bytes at *pos if they fit; returns 0 when they do not. */
static int handshake_put(char *buf, size_t cap, size_t *pos, const char *s,
                         size_t n) {
  if (cap - *pos < n)
    return 0;
  memcpy(buf + *pos, s, n);
  *pos += n;
  return 1;
}

size_t wshub_handshake_response(const wshub_handshake_t *hs, char *buf,
                                size_t cap) {
  static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: ";
  static const char proto[] = "Sec-WebSocket-Protocol: ";
  static const char ext[] = "Sec-WebSocket-Extensions: ";
  size_t pos = 0;
  int ok;

  ok = handshake_put(buf, cap, &pos, head, sizeof(head) - 1) &&
       handshake_put(buf, cap, &pos, hs->accept, strlen(hs->accept)) &&
       handshake_put(buf, cap, &pos, "\r\n", 2);
  if (ok && hs->protocol != NULL)
    ok = handshake_put(buf, cap, &pos, proto, sizeof(proto) - 1) &&
         handshake_put(buf, cap, &pos, hs->protocol, strlen(hs->protocol)) &&
         handshake_put(buf, cap, &pos, "\r\n", 2);
  if (ok && hs->extensions != NULL)
    ok =
        handshake_put(buf, cap, &pos, ext, sizeof(ext) - 1) &&
        handshake_put(buf, cap, &pos, hs->extensions, strlen(hs->extensions)) &&
        handshake_put(buf, cap, &pos, "\r\n", 2);
  if (ok)
    ok = handshake_put(buf, cap, &pos, "\r\n", 2);
  return ok ? pos : 0;
}

int wshub_handshake_origin_ok(const wshub_request_t *req,
                              const char *const *allowed, size_t nallowed) {
  size_t olen;
  const char *origin = wshub_request_header(req, "origin", &olen);
  if (nallowed > 0) {
    for (size_t i = 0; i < nallowed; i++) {
      if (strcmp(allowed[i], "*") == 0)
        return 1;
      if (origin != NULL && strlen(allowed[i]) == olen &&
          strncasecmp(allowed[i], origin, olen) == 0)
        return 1;
    }
    return 0;
  }
  if (origin == NULL)
    return 1; /* not a browser */
  /* Same host: the origin's authority is the request's Host. */
  const char *sep = memchr(origin, ':', olen);
  if (sep == NULL || (size_t)(sep - origin) + 3 > olen || sep[1] != '/' ||
      sep[2] != '/')
    return 0; /* "null" and other opaque origins */
  const char *auth = sep + 3;
  size_t alen = olen - (size_t)(auth - origin);
  size_t hlen;
  const char *host = wshub_request_header(req, "host", &hlen);
  return host != NULL && hlen == alen && strncasecmp(host, auth, alen) == 0;
}
