/* utf8.c — incremental UTF-8 validation, written from RFC 3629 §4.
 *
 * The caller owns the wshub_utf8_t; the bytes fed are only read. State:
 *   state = continuation bytes still expected (0 = at a boundary), or
 *           UTF8_FAILED once a byte made the input impossible;
 *   aux   = the range allowed for the next continuation byte,
 *           low byte = lowest, next byte = highest.
 * Only the byte right after a lead byte can have a narrower range than
 * 80..BF (E0, ED, F0, F4 in the RFC's table); every later continuation
 * byte is 80..BF, so one range is all the state a character needs.
 */
#include "utf8.h"

#include <string.h>

#define UTF8_FAILED 0xffffffffu
#define UTF8_RANGE(lo, hi) ((uint32_t)(lo) | ((uint32_t)(hi) << 8))
#define UTF8_ANY UTF8_RANGE(0x80, 0xbf)
#define UTF8_HIGH_BITS 0x8080808080808080ull

void wshub_utf8_init(wshub_utf8_t *u) {
  u->state = 0;
  u->aux = 0;
}

/* For a non-ASCII lead byte, sets how many continuation bytes follow and
 * the range of the first one (RFC 3629 §4, UTF8-2/3/4). Returns 0 for bytes
 * that cannot start a character: 80..BF (continuations), C0/C1 (always
 * overlong) and F5..FF (beyond U+10FFFF or not in UTF-8 at all). */
static int utf8_lead(uint8_t b, uint32_t *need, uint32_t *range) {
  if (b >= 0xc2 && b <= 0xdf) {
    *need = 1;
    *range = UTF8_ANY;
  } else if (b >= 0xe0 && b <= 0xef) {
    *need = 2;
    if (b == 0xe0)
      *range = UTF8_RANGE(0xa0, 0xbf); /* below A0 is overlong */
    else if (b == 0xed)
      *range = UTF8_RANGE(0x80, 0x9f); /* A0 and up are surrogates */
    else
      *range = UTF8_ANY;
  } else if (b >= 0xf0 && b <= 0xf4) {
    *need = 3;
    if (b == 0xf0)
      *range = UTF8_RANGE(0x90, 0xbf); /* below 90 is overlong */
    else if (b == 0xf4)
      *range = UTF8_RANGE(0x80, 0x8f); /* 90 and up is past U+10FFFF */
    else
      *range = UTF8_ANY;
  } else {
    return 0;
  }
  return 1;
}

int wshub_utf8_feed(wshub_utf8_t *u, const uint8_t *p, size_t len) {
  uint32_t need = u->state;
  uint32_t range = u->aux;
  size_t i = 0;

  if (need == UTF8_FAILED)
    return -1;
  while (i < len) {
    uint8_t b;
    if (need == 0) {
      /* At a boundary: skip runs of ASCII eight bytes at a time. */
      while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & UTF8_HIGH_BITS)
          break;
        i += 8;
      }
      if (i == len)
        break;
      b = p[i++];
      if (b < 0x80)
        continue;
      if (!utf8_lead(b, &need, &range))
        goto fail;
    } else {
      b = p[i++];
      if (b < (range & 0xff) || b > (range >> 8))
        goto fail;
      need--;
      range = UTF8_ANY;
    }
  }
  u->state = need;
  u->aux = range;
  return 0;

fail:
  u->state = UTF8_FAILED;
  u->aux = 0;
  return -1;
}

int wshub_utf8_complete(const wshub_utf8_t *u) {
  return u->state == 0;
}

int wshub_utf8_valid(const uint8_t *p, size_t len) {
  wshub_utf8_t u;
  wshub_utf8_init(&u);
  return wshub_utf8_feed(&u, p, len) == 0 && wshub_utf8_complete(&u);
}
