/* pmd.h — negotiating permessage-deflate (RFC 7692 §5, §7.1) in the
 * opening handshake.
 *
 * Pure functions, like handshake.c: they read the request's
 * Sec-WebSocket-Extensions headers (borrowed) and write only into the
 * caller's wshub_pmd_t and buffer. The compression itself is deflate.c's.
 *
 * wshub's side of the bargain is fixed: the server always compresses every
 * message on its own (it answers server_no_context_takeover even when not
 * asked, RFC 7692 §7.1.1.1), so one compressed frame can be shared by every
 * member of a room. What the client may do is configured: by default it
 * must also compress each message on its own (client_no_context_takeover),
 * so the server keeps no inflate state per connection; with a client window
 * of 8..15 bits the client may keep its context, and the server keeps a
 * window of that size for it.
 */
#ifndef WSHUB_PMD_H
#define WSHUB_PMD_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

typedef struct {
  uint8_t server_bits; /* window bits the server compresses with (8..15) */
  uint8_t server_said; /* the offer had server_max_window_bits: echo it */
  uint8_t client_bits; /* 0: client_no_context_takeover; else the window
                          bits of the client's kept context */
  uint8_t client_said; /* answer client_max_window_bits=client_bits */
} wshub_pmd_t;

/* Longest response value wshub_pmd_response writes. */
#define WSHUB_PMD_RESPONSE_MAX 128

/* Reads every Sec-WebSocket-Extensions header of the request as one list of
 * offers and accepts the first acceptable permessage-deflate offer (§7.1:
 * unknown, repeated or badly valued parameters decline that offer; other
 * extensions are ignored). client_window is 0 or 8..15 (see above).
 * Returns 1 with *out filled when an offer was accepted, 0 when none was,
 * and -1 when a header does not follow the RFC 6455 §9.1 grammar. */
int wshub_pmd_negotiate(const wshub_request_t *req, unsigned client_window,
                        wshub_pmd_t *out);

/* Writes the accepted parameters as a Sec-WebSocket-Extensions value
 * (NUL-terminated) and returns its length; 0 if cap is too small. */
size_t wshub_pmd_response(const wshub_pmd_t *p, char *buf, size_t cap);

#endif
