/* frame.c — building unmasked server frames once (see frame.h). */
#include "frame.h"

#include <string.h>

size_t wshub_frame_header(uint8_t *out, uint8_t opcode, uint64_t len) {
  out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xffff) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++)
    out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

wshub_buf_t *wshub_frame_build(uint8_t opcode, const void *payload,
                               size_t len) {
  wshub_buf_t *b = wshub_buf_new(len + 10);
  if (b == NULL)
    return NULL;
  size_t h = wshub_frame_header((uint8_t *)b->data, opcode, len);
  if (len > 0)
    memcpy(b->data + h, payload, len);
  b->len = h + len;
  return b;
}

wshub_buf_t *wshub_frame_build_parts(uint8_t opcode, const uv_buf_t *parts,
                                     size_t n) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += parts[i].len;
  wshub_buf_t *b = wshub_buf_new(len + 10);
  if (b == NULL)
    return NULL;
  size_t o = wshub_frame_header((uint8_t *)b->data, opcode, len);
  for (size_t i = 0; i < n; i++) {
    if (parts[i].len > 0)
      memcpy(b->data + o, parts[i].base, parts[i].len);
    o += parts[i].len;
  }
  b->len = o;
  return b;
}

size_t wshub_frame_close_into(uint8_t out[WSHUB_FRAME_CLOSE_MAX], uint16_t code,
                              const char *reason) {
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 123) {
    rl = 123;
    while (rl > 0 && ((uint8_t)reason[rl] & 0xc0) == 0x80)
      rl--; /* do not cut a character in half */
  }
  size_t h = wshub_frame_header(out, WSHUB_OP_CLOSE, 2 + rl);
  out[h] = (uint8_t)(code >> 8);
  out[h + 1] = (uint8_t)code;
  if (rl > 0)
    memcpy(out + h + 2, reason, rl);
  return h + 2 + rl;
}

wshub_buf_t *wshub_frame_close(uint16_t code, const char *reason) {
  uint8_t f[WSHUB_FRAME_CLOSE_MAX];
  return wshub_buf_copy(f, wshub_frame_close_into(f, code, reason));
}
