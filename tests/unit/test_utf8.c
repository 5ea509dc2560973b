/* test_utf8.c — unit tests of the incremental UTF-8 validator (utf8.c).
 *
 * Each sample states where it must fail: the index of the first byte that
 * makes it impossible, FAIL_NONE for complete valid text, or TRUNCATED for
 * a valid but unfinished prefix. Every sample is run one-shot, byte by
 * byte (checking which call fails), split into two pieces at every
 * position, and again inside runs of ASCII so that the eight-bytes-at-a-
 * time path meets it at every alignment. Finally the validator is compared
 * exhaustively, on all 1-, 2- and 3-byte inputs and on many 4-byte ones,
 * with a reference in this file that decodes code points arithmetically
 * (RFC 3629 §3) instead of using the byte-range table utf8.c is built on.
 */
#include <stdint.h>
#include <string.h>

#include "unit.h"
#include "utf8.h"

#define FAIL_NONE (-1) /* complete, valid */
#define TRUNCATED (-2) /* valid so far, ends inside a character */
#define MAX_SAMPLE 64

typedef struct {
  const char *label;
  const char *bytes;
  size_t len;
  int fail_at;
} sample_t;

#define S(label, bytes, fail_at)                                               \
  { label, bytes, sizeof(bytes) - 1, fail_at }

static const sample_t samples[] = {
    S("empty", "", FAIL_NONE),
    S("ASCII", "Hello, world! 0123456789 ~", FAIL_NONE),
    {"ASCII NUL", "a\0b", 3, FAIL_NONE},
    S("DEL", "\x7f", FAIL_NONE),
    /* boundaries of each length */
    S("U+0080", "\xc2\x80", FAIL_NONE),
    S("U+07FF", "\xdf\xbf", FAIL_NONE),
    S("U+0800", "\xe0\xa0\x80", FAIL_NONE),
    S("U+D7FF (below surrogates)", "\xed\x9f\xbf", FAIL_NONE),
    S("U+E000 (above surrogates)", "\xee\x80\x80", FAIL_NONE),
    S("U+FFFD", "\xef\xbf\xbd", FAIL_NONE),
    S("U+FFFF", "\xef\xbf\xbf", FAIL_NONE),
    S("U+10000", "\xf0\x90\x80\x80", FAIL_NONE),
    S("U+10FFFF", "\xf4\x8f\xbf\xbf", FAIL_NONE),
    S("U+FFFFF (F3)", "\xf3\xbf\xbf\xbf", FAIL_NONE),
    /* Kuhn-style samples */
    S("kosme (U+1F79 omicron with oxia)",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", FAIL_NONE),
    S("kosme (U+03CC)", "\xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5", FAIL_NONE),
    S("Gruesse",
      "Gr\xc3\xbc\xc3\x9f"
      "e",
      FAIL_NONE),
    S("nihongo", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", FAIL_NONE),
    S("emoji", "\xf0\x9f\x98\x80 ok", FAIL_NONE),
    /* overlong forms of '/' and NUL, and the largest overlongs */
    S("overlong '/' 2", "\xc0\xaf", 0),
    S("overlong '/' 3", "\xe0\x80\xaf", 1),
    S("overlong '/' 4", "\xf0\x80\x80\xaf", 1),
    S("overlong NUL 2", "\xc0\x80", 0),
    S("overlong NUL 3", "\xe0\x80\x80", 1),
    S("overlong NUL 4", "\xf0\x80\x80\x80", 1),
    S("overlong U+007F", "\xc1\xbf", 0),
    S("overlong U+07FF", "\xe0\x9f\xbf", 1),
    S("overlong U+FFFF", "\xf0\x8f\xbf\xbf", 1),
    /* surrogates */
    S("U+D800", "\xed\xa0\x80", 1),
    S("U+DBFF", "\xed\xaf\xbf", 1),
    S("U+DC00", "\xed\xb0\x80", 1),
    S("U+DFFF", "\xed\xbf\xbf", 1),
    S("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1),
    S("surrogate after text", "ab\xed\xa0", 3),
    /* beyond U+10FFFF, and bytes that never occur */
    S("U+110000", "\xf4\x90\x80\x80", 1),
    S("F4 BF", "\xf4\xbf\xbf\xbf", 1),
    S("F5", "\xf5\x80\x80\x80", 0),
    S("F7", "\xf7\xbf\xbf\xbf", 0),
    S("F8 five-byte", "\xf8\x88\x80\x80\x80", 0),
    S("FC six-byte", "\xfc\x84\x80\x80\x80\x80", 0),
    S("FE", "\xfe", 0),
    S("FF", "\xff", 0),
    S("C0 alone", "\xc0", 0),
    S("C1 alone", "\xc1", 0),
    S("F5 after text", "abc\xf5", 3),
    /* stray continuation bytes */
    S("80 at start", "\x80", 0),
    S("BF at start", "\xbf", 0),
    S("80 after ASCII", "a\x80", 1),
    S("extra continuation", "\xc2\x80\x80", 2),
    S("extra continuation after 4", "\xf0\x90\x80\x80\xbf", 4),
    /* a continuation missing */
    S("C2 then ASCII", "\xc2\x41", 1),
    S("E1 then ASCII", "\xe1\x41", 1),
    S("E1 80 then ASCII", "\xe1\x80\x41", 2),
    S("F1 80 80 then ASCII", "\xf1\x80\x80\x41", 3),
    S("lead after lead", "\xc2\xc2\x80", 1),
    S("E0 then E0", "\xe0\xe0", 1),
    S("F0 90 then C2", "\xf0\x90\xc2", 2),
    /* valid prefixes that stop inside a character */
    S("C2 alone", "\xc2", TRUNCATED),
    S("DF alone", "\xdf", TRUNCATED),
    S("E0 A0", "\xe0\xa0", TRUNCATED),
    S("E1", "\xe1", TRUNCATED),
    S("ED 9F", "\xed\x9f", TRUNCATED),
    S("F0 90 80", "\xf0\x90\x80", TRUNCATED),
    S("F4 8F BF", "\xf4\x8f\xbf", TRUNCATED),
    S("kosme cut", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce", TRUNCATED),
    S("emoji cut", "ok \xf0\x9f\x98", TRUNCATED),
};

/* Feeds the sample one byte per call; checks which call fails. */
static int run_bytewise(unit_t *T, const uint8_t *p, size_t len, int fail_at) {
  wshub_utf8_t u;
  int ok = 1;
  wshub_utf8_init(&u);
  for (size_t i = 0; i < len; i++) {
    int want = (fail_at >= 0 && (size_t)fail_at <= i) ? -1 : 0;
    int got = wshub_utf8_feed(&u, p + i, 1);
    if (got != want) {
      ok &= CHECK_EQ_INT(got, want);
      fprintf(stderr, "  at byte %zu\n", i);
      break;
    }
  }
  ok &= CHECK_EQ_INT(wshub_utf8_complete(&u), fail_at == FAIL_NONE);
  return ok;
}

/* Feeds the sample as p[0..k) and p[k..len) for every k. */
static int run_splits(unit_t *T, const uint8_t *p, size_t len, int fail_at) {
  int bad = 0;
  for (size_t k = 0; k <= len; k++) {
    wshub_utf8_t u;
    int a, b, c;
    wshub_utf8_init(&u);
    a = wshub_utf8_feed(&u, p, k);
    b = wshub_utf8_feed(&u, p + k, len - k);
    c = wshub_utf8_complete(&u);
    if (a != ((fail_at >= 0 && (size_t)fail_at < k) ? -1 : 0) ||
        b != (fail_at >= 0 ? -1 : 0) || c != (fail_at == FAIL_NONE)) {
      if (bad++ == 0)
        fprintf(stderr, "  split at %zu: feeds %d %d, complete %d\n", k, a, b,
                c);
    }
  }
  return CHECK_EQ_INT(bad, 0);
}

static int run_sample(unit_t *T, const uint8_t *p, size_t len, int fail_at) {
  int ok = 1;
  ok &= CHECK_EQ_INT(wshub_utf8_valid(p, len), fail_at == FAIL_NONE);
  ok &= run_bytewise(T, p, len, fail_at);
  ok &= run_splits(T, p, len, fail_at);
  {
    /* One call with everything: -1 exactly when some byte is bad. */
    wshub_utf8_t u;
    wshub_utf8_init(&u);
    ok &= CHECK_EQ_INT(wshub_utf8_feed(&u, p, len), fail_at >= 0 ? -1 : 0);
  }
  return ok;
}

static void test_samples(unit_t *T) {
  static const char pad[] = "0123456789abcdefghijklmnopqrstuv";
  for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
    const sample_t *s = &samples[i];
    const uint8_t *p = (const uint8_t *)s->bytes;
    int ok = run_sample(T, p, s->len, s->fail_at);
    /* Inside ASCII runs: every alignment before, a long run after (only
     * when the sample ends on a boundary, or the run would be wrong). */
    for (size_t before = 0; before <= 17; before++) {
      uint8_t buf[MAX_SAMPLE + 64];
      size_t after = s->fail_at == TRUNCATED ? 0 : 19;
      int shifted = s->fail_at >= 0 ? s->fail_at + (int)before : s->fail_at;
      memcpy(buf, pad, before);
      memcpy(buf + before, p, s->len);
      memcpy(buf + before + s->len, pad, after);
      ok &= run_sample(T, buf, before + s->len + after, shifted);
      if (!ok) {
        fprintf(stderr, "  (with %zu ASCII bytes before)\n", before);
        break;
      }
    }
    if (!ok)
      fprintf(stderr, "  in sample %zu: %s\n", i, s->label);
  }
}

/* Every position of a 64-byte ASCII buffer gets one stray 0x80, or one
 * valid 2-byte character. */
static void test_ascii_fast_path(unit_t *T) {
  uint8_t buf[64];
  int bad = 0;
  for (size_t pos = 0; pos < sizeof(buf); pos++) {
    wshub_utf8_t u;
    memset(buf, 'a', sizeof(buf));
    buf[pos] = 0x80;
    wshub_utf8_init(&u);
    if (wshub_utf8_feed(&u, buf, sizeof(buf)) != -1 ||
        wshub_utf8_valid(buf, sizeof(buf)) != 0 ||
        wshub_utf8_feed(&u, buf, pos) != -1)
      bad++;
    /* The prefix before the bad byte is fine on its own. */
    wshub_utf8_init(&u);
    if (wshub_utf8_feed(&u, buf, pos) != 0 || !wshub_utf8_complete(&u))
      bad++;
    if (pos + 1 < sizeof(buf)) {
      buf[pos] = 0xc3;
      buf[pos + 1] = 0xa9;
      if (!wshub_utf8_valid(buf, sizeof(buf)))
        bad++;
      if (wshub_utf8_valid(buf, pos + 1)) /* cut after the lead byte */
        bad++;
    }
    buf[pos] = 0xff;
    if (wshub_utf8_valid(buf, sizeof(buf)))
      bad++;
  }
  CHECK_EQ_INT(bad, 0);
  memset(buf, 0x7f, sizeof(buf));
  CHECK_EQ_INT(wshub_utf8_valid(buf, sizeof(buf)), 1);
  memset(buf, 0x00, sizeof(buf));
  CHECK_EQ_INT(wshub_utf8_valid(buf, sizeof(buf)), 1);
}

static void test_sticky_and_init(unit_t *T) {
  wshub_utf8_t u;
  wshub_utf8_init(&u);
  CHECK_EQ_INT(wshub_utf8_complete(&u), 1);
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"ok", 2), 0);
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"\xed\xa0", 2), -1);
  CHECK_EQ_INT(wshub_utf8_complete(&u), 0);
  /* Later valid bytes, or nothing at all, still report the failure. */
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"abcdefghijklmnop", 16),
               -1);
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"", 0), -1);
  CHECK_EQ_INT(wshub_utf8_complete(&u), 0);
  wshub_utf8_init(&u);
  CHECK_EQ_INT(wshub_utf8_complete(&u), 1);
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"\xe2\x82", 2), 0);
  CHECK_EQ_INT(wshub_utf8_complete(&u), 0);
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"", 0), 0);
  CHECK_EQ_INT(wshub_utf8_complete(&u), 0);
  CHECK_EQ_INT(wshub_utf8_feed(&u, (const uint8_t *)"\xac", 1), 0); /* € */
  CHECK_EQ_INT(wshub_utf8_complete(&u), 1);
  /* Two validators do not share anything. */
  {
    wshub_utf8_t a, b;
    wshub_utf8_init(&a);
    wshub_utf8_init(&b);
    CHECK_EQ_INT(wshub_utf8_feed(&a, (const uint8_t *)"\xf0\x9f", 2), 0);
    CHECK_EQ_INT(wshub_utf8_feed(&b, (const uint8_t *)"\x80", 1), -1);
    CHECK_EQ_INT(wshub_utf8_feed(&a, (const uint8_t *)"\x98\x80", 2), 0);
    CHECK_EQ_INT(wshub_utf8_complete(&a), 1);
  }
}

/* Reference helper: 1 if a character of n bytes whose known bits are cp,
 * with `rest` bits still to come, can still become an allowed code point:
 * at least the minimum for n bytes, at most U+10FFFF, not a surrogate. The
 * reachable code points form one interval, so checking its ends is
 * enough. */
static int ref_viable(uint32_t cp, unsigned rest, size_t n) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  uint32_t lo = cp << rest;
  uint32_t hi = lo | ((1u << rest) - 1);
  if (lo < min_cp[n])
    lo = min_cp[n];
  if (hi > 0x10ffff)
    hi = 0x10ffff;
  return lo <= hi && !(lo >= 0xd800 && hi <= 0xdfff);
}

/* Reference: the index of the first byte after which no continuation can
 * make valid text, FAIL_NONE or TRUNCATED. It decodes by bit patterns
 * (RFC 3629 §3) and asks ref_viable after every byte of a character,
 * instead of using the byte-range table utf8.c is built on. */
static int ref_check(const uint8_t *p, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t b = p[i];
    size_t n;
    uint32_t cp;
    if (b < 0x80) {
      i++;
      continue;
    }
    if ((b & 0xe0) == 0xc0) {
      n = 2;
      cp = b & 0x1fu;
    } else if ((b & 0xf0) == 0xe0) {
      n = 3;
      cp = b & 0x0fu;
    } else if ((b & 0xf8) == 0xf0) {
      n = 4;
      cp = b & 0x07u;
    } else {
      return (int)i;
    }
    if (!ref_viable(cp, (unsigned)(n - 1) * 6, n))
      return (int)i;
    for (size_t k = 1; k < n; k++) {
      if (i + k >= len)
        return TRUNCATED;
      if ((p[i + k] & 0xc0) != 0x80)
        return (int)(i + k);
      cp = (cp << 6) | (p[i + k] & 0x3fu);
      if (!ref_viable(cp, (unsigned)(n - 1 - k) * 6, n))
        return (int)(i + k);
    }
    i += n;
  }
  return FAIL_NONE;
}

/* The validator's answer in the same form as ref_check. */
static int got_check(const uint8_t *p, size_t len) {
  wshub_utf8_t u;
  wshub_utf8_init(&u);
  for (size_t i = 0; i < len; i++) {
    if (wshub_utf8_feed(&u, p + i, 1) != 0)
      return (int)i;
  }
  return wshub_utf8_complete(&u) ? FAIL_NONE : TRUNCATED;
}

static int compare(const uint8_t *p, size_t len, unsigned long *bad) {
  int want = ref_check(p, len);
  int got = got_check(p, len);
  if (want != got || wshub_utf8_valid(p, len) != (want == FAIL_NONE)) {
    if ((*bad)++ == 0) {
      fprintf(stderr, "  first mismatch: bytes");
      for (size_t i = 0; i < len; i++)
        fprintf(stderr, " %02x", p[i]);
      fprintf(stderr, ": want %d, got %d\n", want, got);
    }
    return 0;
  }
  return 1;
}

static void test_reference_sanity(unit_t *T) {
  /* The reference itself, on cases from the table above. */
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xf4\x90", 2), 1);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xed\xa0", 2), 1);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xe0\x80", 2), 1);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xc1", 1), 0);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xf5", 1), 0);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xf4\x8f", 2), TRUNCATED);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xf4\x8f\xbf\xbf", 4), FAIL_NONE);
  CHECK_EQ_INT(ref_check((const uint8_t *)"\xed\x9f\xbf", 3), FAIL_NONE);
}

static void test_exhaustive(unit_t *T) {
  static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                  0xa0, 0xbf, 0xc0, 0xc2, 0xe1, 0xf0, 0xff};
  unsigned long bad = 0, n = 0;
  uint8_t b[4];

  for (unsigned x = 0; x < 256; x++) {
    b[0] = (uint8_t)x;
    n += compare(b, 1, &bad) ? 1 : 0;
    for (unsigned y = 0; y < 256; y++) {
      b[1] = (uint8_t)y;
      n += compare(b, 2, &bad) ? 1 : 0;
      for (unsigned z = 0; z < 256; z++) {
        b[2] = (uint8_t)z;
        n += compare(b, 3, &bad) ? 1 : 0;
      }
      /* 4 bytes: every first two, a spread of the last two. */
      for (size_t j = 0; j < sizeof(tails); j++) {
        b[2] = tails[j];
        for (size_t k = 0; k < sizeof(tails); k++) {
          b[3] = tails[k];
          n += compare(b, 4, &bad) ? 1 : 0;
        }
      }
    }
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(n > 16000000ul); /* the loops really ran */
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  test_samples(T);
  test_ascii_fast_path(T);
  test_sticky_and_init(T);
  test_reference_sanity(T);
  test_exhaustive(T);
  return unit_finish(T);
}
