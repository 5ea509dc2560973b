/* test_jbuf.c — unit tests of the JSON text builder (jbuf.c).
 *
 * The builder's output must be byte for byte what jansson writes for the
 * same value, because the chat splices it with jansson's own output and
 * clients parse both. Strings are compared with json_dumps of the same
 * string (JSON_ENCODE_ANY) over hand-picked samples (quotes, backslashes,
 * every control character, multi-byte characters, U+2028) and thousands of
 * random UTF-8 strings; integers with printf at the edges; a whole message
 * built piece by piece is parsed back with json_loads. Invalid UTF-8 and
 * out-of-range copies must fail, and failures must be sticky.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jbuf.h"
#include "unit.h"

/* jbuf_str(s) must equal json_dumps(json_stringn(s)). */
static void check_str(unit_t *T, const char *s, size_t n) {
  wshub_jbuf_t b;
  wshub_jbuf_init(&b, 0);
  wshub_jbuf_str(&b, s, n);
  json_t *v = json_stringn(s, n);
  char *want = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  CHECK(want != NULL);
  CHECK(!b.failed);
  if (want != NULL && !b.failed) {
    CHECK_MEM(b.data, b.len, want, strlen(want));
    CHECK_EQ_INT(b.data[b.len], '\0');
  }
  free(want);
  json_decref(v);
  wshub_jbuf_free(&b);
}

static void check_int(unit_t *T, int64_t v) {
  wshub_jbuf_t b;
  wshub_jbuf_init(&b, 4);
  wshub_jbuf_int(&b, v);
  char want[32];
  int n = snprintf(want, sizeof(want), "%" PRId64, v);
  CHECK(!b.failed);
  CHECK_MEM(b.data, b.len, want, (size_t)n);
  wshub_jbuf_free(&b);
}

/* Appends the UTF-8 encoding of code point cp to p; returns the length. */
static size_t put_utf8(char *p, uint32_t cp) {
  if (cp < 0x80) {
    p[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    p[0] = (char)(0xc0 | (cp >> 6));
    p[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    p[0] = (char)(0xe0 | (cp >> 12));
    p[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    p[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  p[0] = (char)(0xf0 | (cp >> 18));
  p[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  p[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  p[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* A deterministic generator (xorshift), so a failure can be replayed. */
static uint32_t next_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return (uint32_t)(x >> 32);
}

static void test_strings(unit_t *T) {
  static const char *const samples[] = {
      "",
      "hi",
      "say \"hi\"",
      "back\\slash",
      "slash / stays",
      "tab\there",
      "line\nbreak",
      "cr\rlf\n",
      "\x7f delete",
      "caf\xc3\xa9",
      "\xe2\x82\xac 5",
      "\xf0\x9f\x98\x80 grin",
      "sep \xe2\x80\xa8 and \xe2\x80\xa9",
      "<script>&amp;</script>",
  };
  for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
    check_str(T, samples[i], strlen(samples[i]));
  /* Every control character, alone and between letters; and NUL inside. */
  for (int c = 0; c < 0x20; c++) {
    char s[3] = {'a', (char)c, 'b'};
    check_str(T, s + 1, 1);
    check_str(T, s, 3);
  }
  /* Random strings over a mix of ASCII, controls and multi-byte code
   * points (no surrogates: they are not UTF-8). */
  uint64_t seed = 0x9e3779b97f4a7c15u;
  char s[512];
  for (int round = 0; round < 3000; round++) {
    size_t n = 0, chars = next_rand(&seed) % 100;
    for (size_t k = 0; k < chars; k++) {
      uint32_t r = next_rand(&seed), cp;
      switch (r % 6) {
      case 0:
        cp = r % 0x20;
        break;
      case 1:
      case 2:
        cp = 0x20 + r % 0x60;
        break;
      case 3:
        cp = 0x80 + r % 0x780;
        break;
      case 4:
        cp = 0x800 + r % 0xf800;
        if (cp >= 0xd800 && cp <= 0xdfff)
          cp = 0x2028;
        break;
      default:
        cp = 0x10000 + r % 0x100000;
        break;
      }
      n += put_utf8(s + n, cp);
    }
    check_str(T, s, n);
  }
}

static void test_ints(unit_t *T) {
  const int64_t v[] = {
      0,         1,         -1,           9,         10,
      99,        100,       -100,         123456789, 1790000000000,
      INT64_MAX, INT64_MIN, INT64_MIN + 1};
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
    check_int(T, v[i]);
  for (int64_t p = 1; p < INT64_MAX / 10; p *= 10) {
    check_int(T, p);
    check_int(T, p - 1);
    check_int(T, -p);
  }
}

/* A chat message built like chat.c builds it parses back to its parts. */
static void test_message(unit_t *T) {
  const char *text = "he said \"hi\"\n\xe2\x82\xac";
  wshub_jbuf_t b;
  wshub_jbuf_init(&b, 8); /* small: forces growth, and a move in _again */
  wshub_jbuf_lit(&b, "{\"type\":\"message\",\"id\":");
  wshub_jbuf_int(&b, 42);
  wshub_jbuf_lit(&b, ",\"text\":");
  size_t t0 = b.len;
  wshub_jbuf_str(&b, text, strlen(text));
  size_t tl = b.len - t0;
  wshub_jbuf_lit(&b, ",\"params\":{\"value\":");
  wshub_jbuf_again(&b, t0, tl);
  json_t *member = json_pack("{s:s, s:s}", "id", "c7", "nick", "ann");
  wshub_jbuf_lit(&b, "},\"from\":");
  wshub_jbuf_json(&b, member);
  wshub_jbuf_lit(&b, ",\"own\":false}");
  json_decref(member);
  CHECK(!b.failed);
  json_error_t err;
  json_t *o = b.failed ? NULL : json_loadb(b.data, b.len, 0, &err);
  CHECK(o != NULL);
  if (o != NULL) {
    CHECK_EQ_STR(json_string_value(json_object_get(o, "type")), "message");
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "id")), 42);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "text")), text);
    CHECK_EQ_STR(json_string_value(
                     json_object_get(json_object_get(o, "params"), "value")),
                 text);
    CHECK_EQ_STR(
        json_string_value(json_object_get(json_object_get(o, "from"), "nick")),
        "ann");
    CHECK(json_is_false(json_object_get(o, "own")));
    CHECK_EQ_INT((long long)json_object_size(o), 6);
  }
  json_decref(o);
  wshub_jbuf_free(&b);
}

static void test_failures(unit_t *T) {
  /* Not UTF-8: a lone continuation byte, an overlong form, a surrogate,
   * a truncated sequence. */
  const char *bad[] = {"\x80", "\xc0\xaf", "\xed\xa0\x80", "ok \xe2\x82"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    wshub_jbuf_t b;
    wshub_jbuf_init(&b, 0);
    wshub_jbuf_lit(&b, "[");
    wshub_jbuf_str(&b, bad[i], strlen(bad[i]));
    CHECK(b.failed);
    /* Sticky: later appends do nothing. */
    size_t len = b.len;
    wshub_jbuf_lit(&b, "]");
    wshub_jbuf_int(&b, 5);
    wshub_jbuf_str(&b, "fine", 4);
    CHECK(b.failed);
    CHECK_EQ_INT((long long)b.len, (long long)len);
    wshub_jbuf_free(&b);
  }
  /* Copying a span the buffer does not hold. */
  wshub_jbuf_t b;
  wshub_jbuf_init(&b, 0);
  wshub_jbuf_lit(&b, "abc");
  wshub_jbuf_again(&b, 1, 2);
  CHECK(!b.failed);
  CHECK_MEM(b.data, b.len, "abcbc", 5);
  wshub_jbuf_again(&b, 4, 2);
  CHECK(b.failed);
  wshub_jbuf_free(&b);
  /* A NULL value (a failed jansson constructor) fails too. */
  wshub_jbuf_init(&b, 0);
  wshub_jbuf_json(&b, NULL);
  CHECK(b.failed);
  wshub_jbuf_free(&b);
  /* An empty buffer that never grew frees cleanly. */
  wshub_jbuf_init(&b, 0);
  CHECK(b.data == NULL && b.len == 0 && !b.failed);
  wshub_jbuf_free(&b);
}

int main(void) {
  unit_t t = {0}, *T = &t;
  test_strings(T);
  test_ints(T);
  test_message(T);
  test_failures(T);
  return unit_finish(T);
}
