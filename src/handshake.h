/* handshake.h — the RFC 6455 §4.2 opening handshake, server side.
 *
 * Pure functions: they read a parsed request (borrowed, see request.h) and
 * the configured subprotocol list (borrowed), and write only into the
 * caller's wshub_handshake_t and buffers. SHA-1 and base64 come from
 * OpenSSL's libcrypto. Nothing here allocates, logs or touches a socket.
 */
#ifndef WSHUB_HANDSHAKE_H
#define WSHUB_HANDSHAKE_H

#include <stddef.h>

#include "request.h"

/* base64(SHA-1(key + GUID)) is always 28 characters. */
#define WSHUB_ACCEPT_LEN 28

typedef struct {
  int status;         /* 101 when valid, else 400 or 426 */
  const char *reason; /* static text saying which check failed, or "" */
  char accept[WSHUB_ACCEPT_LEN + 1]; /* NUL-terminated, set when 101 */
  const char *protocol;   /* chosen subprotocol (one of the configured
                             strings), or NULL when none was chosen */
  const char *extensions; /* Sec-WebSocket-Extensions value to answer with
                             (the caller's, see pmd.h), or NULL */
} wshub_handshake_t;

/* Computes Sec-WebSocket-Accept for a Sec-WebSocket-Key value. `out` gets
 * 28 characters and a NUL. Returns 0, or UV_EINVAL if key is empty. */
int wshub_handshake_accept_key(const char *key, size_t key_len,
                               char out[WSHUB_ACCEPT_LEN + 1]);

/* Validates an Upgrade request:
 *   method GET, HTTP/1.1 or later, Host present,
 *   Upgrade contains the token "websocket" (case-insensitive),
 *   Connection contains the token "upgrade" (case-insensitive, comma list),
 *   Sec-WebSocket-Key is valid base64 decoding to exactly 16 bytes,
 *   Sec-WebSocket-Version is exactly "13" (missing or other → 426).
 * Subprotocol: the first protocol in the client's Sec-WebSocket-Protocol
 * list (possibly spread over several headers) that is in `protocols`
 * (exact, case-sensitive match) is chosen; none offered or none matching →
 * protocol = NULL and the handshake still succeeds.
 * Returns 0 with out->status = 101, or a negative UV_E* code with
 * out->status 400/426 and out->reason set. */
int wshub_handshake_check(const wshub_request_t *req,
                          const char *const *protocols, size_t nprotocols,
                          wshub_handshake_t *out);

/* The Origin policy for browsers' cross-site WebSocket requests. With
 * `allowed` empty: requests without Origin (non-browser clients) and
 * requests whose Origin's host[:port] equals their Host header are
 * accepted. Otherwise an Origin must equal one of `allowed` exactly
 * (case-insensitive), or `allowed` contains "*". Returns 1 if accepted. */
int wshub_handshake_origin_ok(const wshub_request_t *req,
                              const char *const *allowed, size_t nallowed);

/* Writes the complete "HTTP/1.1 101 Switching Protocols" response head,
 * ending with the empty line, into buf. Returns the number of bytes written,
 * or 0 if cap is too small. */
size_t wshub_handshake_response(const wshub_handshake_t *hs, char *buf,
                                size_t cap);

#endif
