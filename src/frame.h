/* frame.h — server-to-client WebSocket frames (RFC 6455 §5.2), built once.
 *
 * A frame is built as one wshub_buf_t: the 2–10 byte header followed by
 * the payload in the same allocation, so one reference-counted buffer can
 * be queued on any number of connections. Server frames are never masked.
 * The caller owns the returned reference.
 */
#ifndef WSHUB_FRAME_H
#define WSHUB_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"

enum {
  WSHUB_OP_CONT = 0x0,
  WSHUB_OP_TEXT = 0x1,
  WSHUB_OP_BINARY = 0x2,
  WSHUB_OP_CLOSE = 0x8,
  WSHUB_OP_PING = 0x9,
  WSHUB_OP_PONG = 0xA,
};

/* Writes the header of a final (FIN=1) unmasked frame into out (at least
 * 10 bytes) and returns its length. */
size_t wshub_frame_header(uint8_t *out, uint8_t opcode, uint64_t len);

/* A complete frame carrying payload[0..len). NULL if out of memory. */
wshub_buf_t *wshub_frame_build(uint8_t opcode, const void *payload, size_t len);

/* A complete frame whose payload is the concatenation of n pieces. */
wshub_buf_t *wshub_frame_build_parts(uint8_t opcode, const uv_buf_t *parts,
                                     size_t n);

/* A close frame with `code` and a reason (truncated to 123 bytes at a
 * UTF-8 character boundary). */
wshub_buf_t *wshub_frame_close(uint16_t code, const char *reason);

/* The same frame written into `out`, without allocating (for when memory
 * has run out); returns its length. */
#define WSHUB_FRAME_CLOSE_MAX (2 + 125)
size_t wshub_frame_close_into(uint8_t out[WSHUB_FRAME_CLOSE_MAX], uint16_t code,
                              const char *reason);

#endif
