/* test_chat.c — unit tests of the chat's pure helpers (chat.c): room name
 * rules (wshub_chat_room_valid), nickname rules (wshub_chat_nick_valid,
 * counted in code points as chat.h and docs/PROTOCOL.md state) and the
 * query-string reader (wshub_chat_query_param); then the chat object's
 * life cycle: defaults, new/install/free, and the installed callbacks
 * driven directly with connection-less hub clients (sends to them are
 * cancelled), checking the room membership they leave behind and that
 * everything is freed (run under valgrind).
 *
 * "Blank" for nicknames is taken to mean the Unicode space separators
 * (general category Zs): a nickname made only of those is refused.
 */
/* uv.h needs POSIX types (pthread_rwlock_t) that strict -std=c11 hides. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "chat.h"
#include "hub.h"
#include "server.h"
#include "unit.h"
#include "wshub.h"

/* ---- room names ---- */

typedef struct {
  const char *name;
  size_t len; /* 0: strlen(name) */
  int valid;
} name_row_t;

static const name_row_t room_rows[] = {
    {"a", 0, 1},
    {"Z", 0, 1},
    {"0", 0, 1},
    {"9", 0, 1},
    {".", 0, 1},
    {"_", 0, 1},
    {"-", 0, 1},
    {"..", 0, 1},
    {"lobby", 0, 1},
    {"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 0, 1},
    {"abcdefghijklmnopqrstuvwxyz", 0, 1},
    {"0123456789", 0, 1},
    {"dev.team_1-b", 0, 1},
    {"-_.", 0, 1},
    /* anything else */
    {" ", 0, 0},
    {"a b", 0, 0},
    {" lobby", 0, 0},
    {"lobby ", 0, 0},
    {"a/b", 0, 0},
    {"/", 0, 0},
    {"a\\b", 0, 0},
    {"a+b", 0, 0},
    {"a%20b", 0, 0},
    {"a#b", 0, 0},
    {"a?b", 0, 0},
    {"a&b", 0, 0},
    {"a=b", 0, 0},
    {"a:b", 0, 0},
    {"a@b", 0, 0},
    {"a~b", 0, 0},
    {"a,b", 0, 0},
    {"a\tb", 0, 0},
    {"a\nb", 0, 0},
    {"a\x7f", 0, 0},
    {"\xc3\xa9", 0, 0},         /* é */
    {"caf\xc3\xa9", 0, 0},      /* café */
    {"\xed\x95\x9c", 0, 0},     /* 한 */
    {"\xf0\x9f\x98\x80", 0, 0}, /* emoji */
    {"\xff", 0, 0},
    {"a\0b", 3, 0}, /* NUL inside */
    {"ab\0", 3, 0}, /* NUL at the end, counted */
    {"\0", 1, 0},
    /* the length is what counts, not the NUL */
    {"abc def", 3, 1},
    {"a/", 1, 1},
};

static void test_room_valid(unit_t *T) {
  for (size_t i = 0; i < sizeof(room_rows) / sizeof(room_rows[0]); i++) {
    const name_row_t *r = &room_rows[i];
    size_t len = r->len ? r->len : strlen(r->name);
    if (!CHECK_EQ_INT(wshub_chat_room_valid(r->name, len), r->valid)) {
      fprintf(stderr, "  room ");
      unit_print_bytes(r->name, len);
      fputc('\n', stderr);
    }
  }
  CHECK_EQ_INT(wshub_chat_room_valid("", 0), 0);
  CHECK_EQ_INT(wshub_chat_room_valid("abc", 0), 0);

  /* 1..64 characters valid, 65 and more not. */
  char buf[200];
  memset(buf, 'x', sizeof(buf));
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 1), 1);
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 63), 1);
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 64), 1);
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 65), 0);
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 200), 0);
  /* A bad character at the very end of a 64-byte name. */
  buf[63] = '/';
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 64), 0);
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 63), 1);
  buf[0] = ' ';
  CHECK_EQ_INT(wshub_chat_room_valid(buf, 63), 0);

  /* Every byte value alone, and in the middle of a valid name. */
  static const char allowed[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "abcdefghijklmnopqrstuvwxyz"
                                "0123456789._-";
  size_t wrong = 0;
  for (int b = 0; b < 256; b++) {
    char one[1] = {(char)b};
    char mid[3] = {'a', (char)b, 'z'};
    int want = b != 0 && strchr(allowed, b) != NULL;
    if (wshub_chat_room_valid(one, 1) != want ||
        wshub_chat_room_valid(mid, 3) != want) {
      fprintf(stderr, "  byte 0x%02x: want %d\n", b, want);
      wrong++;
    }
  }
  CHECK_EQ_INT(wrong, 0);
}

/* ---- nicknames ---- */

/* n copies of s, NUL-terminated, into buf; returns the byte length. */
static size_t nick_repeat(char *buf, size_t cap, const char *s, size_t n) {
  size_t l = strlen(s), o = 0;
  for (size_t i = 0; i < n && o + l < cap; i++, o += l)
    memcpy(buf + o, s, l);
  buf[o] = '\0';
  return o;
}

static const name_row_t nick_rows[] = {
    {"ann", 0, 1},
    {"a", 0, 1},
    {"Ann Smith", 0, 1},
    {"guest-1", 0, 1},
    {" a ", 0, 1},
    {"caf\xc3\xa9", 0, 1},                      /* café */
    {"\xed\x95\x9c\xea\xb5\xad", 0, 1},         /* 한국 */
    {"\xf0\x9f\x98\x80", 0, 1},                 /* 😀 */
    {"\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 0, 1}, /* 👍🏽 */
    {"e\xcc\x81", 0, 1},                        /* e + combining acute */
    {"\xc2\xa1", 0, 1}, /* U+00A1, just past the C1 range */
    {"a\xc2\xa0"
     "b",
     0, 1},              /* NBSP between letters */
    {"/\\<>&\"'", 0, 1}, /* punctuation is fine */
    {"{}", 0, 1},
    /* empty */
    {"", 0, 0},
    /* control characters, C0, DEL and C1 */
    {"a\0b", 3, 0},
    {"\0", 1, 0},
    {"a\x01", 0, 0},
    {"a\tb", 0, 0},
    {"a\nb", 0, 0},
    {"a\rb", 0, 0},
    {"\x1b[31m", 0, 0},
    {"a\x1f", 0, 0},
    {"a\x7f", 0, 0},
    {"a\xc2\x80", 0, 0}, /* U+0080 */
    {"a\xc2\x85"
     "b",
     0, 0},              /* U+0085 NEL */
    {"a\xc2\x9f", 0, 0}, /* U+009F */
    /* all blank */
    {" ", 0, 0},
    {"   ", 0, 0},
    {"\xc2\xa0", 0, 0}, /* U+00A0 */
    {" \xc2\xa0 ", 0, 0},
    {"\xe3\x80\x80", 0, 0}, /* U+3000 ideographic space */
    {"\xe2\x80\x80", 0, 0}, /* U+2000 en quad */
    {"\xe2\x80\x83", 0, 0}, /* U+2003 em space */
    {"\xe2\x80\x8a", 0, 0}, /* U+200A hair space */
    {"\xe1\x9a\x80", 0, 0}, /* U+1680 ogham space mark */
    {"\xe2\x80\xaf", 0, 0}, /* U+202F narrow no-break space */
    {"\xe2\x81\x9f", 0, 0}, /* U+205F medium math space */
    {" \xe2\x80\xaf\xe3\x80\x80\xc2\xa0", 0, 0},
    /* invalid UTF-8 */
    {"\xff", 0, 0},
    {"a\xe9"
     "b",
     0, 0},                         /* Latin-1 é */
    {"\xc3", 0, 0},                 /* truncated */
    {"ab\xe2\x82", 0, 0},           /* truncated 3-byte */
    {"\x80", 0, 0},                 /* stray continuation */
    {"\xc0\xaf", 0, 0},             /* overlong '/' */
    {"\xe0\x80\xa0", 0, 0},         /* overlong space */
    {"\xed\xa0\x80", 0, 0},         /* surrogate U+D800 */
    {"\xf4\x90\x80\x80", 0, 0},     /* above U+10FFFF */
    {"\xf8\x88\x80\x80\x80", 0, 0}, /* 5-byte form */
};

static void test_nick_valid(unit_t *T) {
  for (size_t i = 0; i < sizeof(nick_rows) / sizeof(nick_rows[0]); i++) {
    const name_row_t *r = &nick_rows[i];
    size_t len = r->len ? r->len : strlen(r->name);
    if (!CHECK_EQ_INT(wshub_chat_nick_valid(r->name, len), r->valid)) {
      fprintf(stderr, "  nick ");
      unit_print_bytes(r->name, len);
      fputc('\n', stderr);
    }
  }
  /* The length given is what counts. */
  CHECK_EQ_INT(wshub_chat_nick_valid("ann\x01", 3), 1);
  CHECK_EQ_INT(wshub_chat_nick_valid("ann", 0), 0);
  CHECK_EQ_INT(wshub_chat_nick_valid("\xc3\xa9", 1), 0); /* cut inside é */

  /* 1–32 characters, counted as code points, whatever their width. */
  static const struct {
    const char *unit;
    size_t bytes;
  } units[] = {
      {"a", 1},
      {"\xc3\xa9", 2},         /* é */
      {"\xed\x95\x9c", 3},     /* 한 */
      {"\xf0\x9f\x98\x80", 4}, /* 😀 */
  };
  char buf[4 * 40 + 1];
  for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
    for (size_t n = 1; n <= 34; n++) {
      size_t len = nick_repeat(buf, sizeof(buf), units[u].unit, n);
      if (!CHECK_EQ_INT(len, n * units[u].bytes))
        continue;
      if (!CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), n <= 32))
        fprintf(stderr, "  %zu x %zu-byte character\n", n, units[u].bytes);
    }
  }
  /* The brief's examples, spelled out. */
  size_t len = nick_repeat(buf, sizeof(buf), "\xed\x95\x9c", 32);
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 1);
  len = nick_repeat(buf, sizeof(buf), "\xc3\xa9", 33);
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 0);
  len = nick_repeat(buf, sizeof(buf), "\xc3\xa9", 32);
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 1);
  /* Decomposed é is two code points: 16 fit, 17 do not. */
  len = nick_repeat(buf, sizeof(buf), "e\xcc\x81", 16);
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 1);
  len = nick_repeat(buf, sizeof(buf), "e\xcc\x81", 17);
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 0);
  /* 31 spaces and one letter is not blank; 32 spaces is. */
  len = nick_repeat(buf, sizeof(buf), " ", 31);
  buf[len++] = 'x';
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 1);
  len = nick_repeat(buf, sizeof(buf), " ", 32);
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 0);
  /* A control character at the end of an otherwise full nick. */
  len = nick_repeat(buf, sizeof(buf), "a", 31);
  buf[len++] = '\x1f';
  CHECK_EQ_INT(wshub_chat_nick_valid(buf, len), 0);

  /* Every code point below U+0100 alone: controls and blanks invalid. */
  size_t wrong = 0;
  for (unsigned cp = 0; cp < 0x100; cp++) {
    char s[2];
    size_t n;
    if (cp < 0x80) {
      s[0] = (char)cp;
      n = 1;
    } else {
      s[0] = (char)(0xc0 | (cp >> 6));
      s[1] = (char)(0x80 | (cp & 0x3f));
      n = 2;
    }
    int want =
        !(cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x20 || cp == 0xa0);
    if (wshub_chat_nick_valid(s, n) != want) {
      fprintf(stderr, "  U+%04X alone: want %d\n", cp, want);
      wrong++;
    }
  }
  CHECK_EQ_INT(wrong, 0);
}

/* ---- query parameters ---- */

typedef struct {
  const char *target;
  const char *key;
  size_t cap; /* 0 → 64 */
  int rc;
  const char *want; /* when rc >= 0: rc bytes */
} query_row_t;

static const query_row_t query_rows[] = {
    {"/?room=dev", "room", 0, 3, "dev"},
    {"/chat?room=dev&nick=ann", "nick", 0, 3, "ann"},
    {"/chat?room=dev&nick=ann", "room", 0, 3, "dev"},
    {"/?a=1&room=mid&b=2", "room", 0, 3, "mid"},
    /* absent */
    {"/", "room", 0, -1, NULL},
    {"/chat", "room", 0, -1, NULL},
    {"/?", "room", 0, -1, NULL},
    {"/?nick=ann", "room", 0, -1, NULL},
    {"/room=dev", "room", 0, -1, NULL}, /* in the path, not the query */
    /* the first of several */
    {"/?room=a&room=b", "room", 0, 1, "a"},
    {"/?x=1&room=a&room=b&room=c", "room", 0, 1, "a"},
    /* keys that are prefixes or suffixes of others */
    {"/?roomy=x&room=y", "room", 0, 1, "y"},
    {"/?roomy=x", "room", 0, -1, NULL},
    {"/?room=y&roomy=x", "roomy", 0, 1, "x"},
    {"/?room=y", "roomy", 0, -1, NULL},
    {"/?myroom=x", "room", 0, -1, NULL},
    {"/?myroom=x&room=z", "room", 0, 1, "z"},
    {"/?x=room=q", "room", 0, -1, NULL},
    {"/?Room=x", "room", 0, -1, NULL}, /* keys are case-sensitive */
    /* percent-decoding and '+' */
    {"/?room=a%20b", "room", 0, 3, "a b"},
    {"/?nick=%41%62c", "nick", 0, 3, "Abc"},
    {"/?nick=%c3%a9", "nick", 0, 2, "\xc3\xa9"},
    {"/?nick=%C3%A9", "nick", 0, 2, "\xc3\xa9"},
    {"/?nick=a+b", "nick", 0, 3, "a b"},
    {"/?nick=+", "nick", 0, 1, " "},
    {"/?nick=%2B", "nick", 0, 1, "+"},
    {"/?nick=%25", "nick", 0, 1, "%"},
    {"/?nick=100%25+sure", "nick", 0, 9, "100% sure"},
    {"/?nick=a%26b&x=1", "nick", 0, 3, "a&b"},
    {"/?nick=a%3Db", "nick", 0, 3, "a=b"},
    {"/?nick=a%23b", "nick", 0, 3, "a#b"},
    {"/?nick=a%00b", "nick", 0, 3, "a\0b"},
    {"/?nick=%F0%9F%98%80", "nick", 0, 4, "\xf0\x9f\x98\x80"},
    /* literal characters that are not separators */
    {"/?room=a?b", "room", 0, 3, "a?b"},
    {"/?room=a=b", "room", 0, 3, "a=b"},
    {"/?&&room=x", "room", 0, 1, "x"},
    {"/?=x&room=y", "room", 0, 1, "y"},
    /* the fragment is not part of the query */
    {"/?room=a#frag", "room", 0, 1, "a"},
    {"/?room=a#&room=b", "room", 0, 1, "a"},
    {"/?x=1#room=z", "room", 0, -1, NULL},
    {"/?room=#x", "room", 0, 0, ""},
    {"/#frag?room=a", "room", 0, -1, NULL},
    {"/#?room=a", "room", 0, -1, NULL},
    /* empty values */
    {"/?room=", "room", 0, 0, ""},
    {"/?room=&nick=a", "room", 0, 0, ""},
    {"/?room=&room=b", "room", 0, 0, ""},
    /* the cap: at most cap-1 bytes (decoded) */
    {"/?room=abcd", "room", 5, 4, "abcd"},
    {"/?room=abcd", "room", 4, -2, NULL},
    {"/?room=abcd", "room", 1, -2, NULL},
    {"/?room=", "room", 1, 0, ""},
    {"/?room=%41%41%41%41", "room", 5, 4, "AAAA"},
    {"/?room=%41%41%41%41", "room", 4, -2, NULL},
    {"/?room=a+b+", "room", 5, 4, "a b "},
    {"/?room=a+b+", "room", 4, -2, NULL},
};

static void test_query_param(unit_t *T) {
  for (size_t i = 0; i < sizeof(query_rows) / sizeof(query_rows[0]); i++) {
    const query_row_t *r = &query_rows[i];
    char out[64];
    size_t cap = r->cap ? r->cap : sizeof(out);
    memset(out, 'Z', sizeof(out));
    int rc =
        wshub_chat_query_param(r->target, strlen(r->target), r->key, out, cap);
    int ok = CHECK_EQ_INT(rc, r->rc);
    if (ok && rc >= 0) {
      ok = CHECK_MEM(out, (size_t)rc, r->want, (size_t)r->rc);
      ok = CHECK_EQ_INT(out[rc], '\0') && ok; /* NUL-terminated */
    }
    /* Nothing is written past the cap. */
    size_t past = 0;
    for (size_t k = cap; k < sizeof(out); k++)
      past += out[k] != 'Z';
    ok = CHECK_EQ_INT(past, 0) && ok;
    if (!ok)
      fprintf(stderr, "  target \"%s\", key \"%s\", cap %zu\n", r->target,
              r->key, cap);
  }

  /* Only len bytes of the target are read (it need not end in NUL). */
  char out[16];
  const char t1[] = "/?room=abcdef&nick=x";
  CHECK_EQ_INT(wshub_chat_query_param(t1, 9, "room", out, sizeof(out)), 2);
  CHECK_EQ_STR(out, "ab");
  CHECK_EQ_INT(wshub_chat_query_param(t1, 13, "nick", out, sizeof(out)), -1);
  CHECK_EQ_INT(wshub_chat_query_param(t1, 1, "room", out, sizeof(out)), -1);
  CHECK_EQ_INT(wshub_chat_query_param(t1, 0, "room", out, sizeof(out)), -1);
  char t2[12];
  memcpy(t2, "/?room=abcd", 11);
  t2[11] = 'X'; /* no terminator */
  CHECK_EQ_INT(wshub_chat_query_param(t2, 11, "room", out, sizeof(out)), 4);
  CHECK_EQ_STR(out, "abcd");
  /* An escape that ends exactly at the end of the target. */
  memcpy(t2, "/?room=a%41", 11);
  CHECK_EQ_INT(wshub_chat_query_param(t2, 11, "room", out, sizeof(out)), 2);
  CHECK_EQ_STR(out, "aA");
}

/* ---- the chat object ---- */

typedef struct {
  uv_loop_t loop;
  int closed;
} chat_env_t;

static void chat_on_server_closed(wshub_server_t *s) {
  chat_env_t *env = s->loop->data;
  env->closed++;
}

static void test_chat_object(unit_t *T) {
  wshub_chat_config_t ccfg;
  memset(&ccfg, 0xab, sizeof(ccfg));
  wshub_chat_config_init(&ccfg);
  CHECK_EQ_INT(ccfg.max_text, 4000);
  CHECK_EQ_INT(ccfg.history, 100);
  CHECK_EQ_INT(ccfg.max_rooms, 10000);

  /* new then free, untouched */
  wshub_chat_t *chat = wshub_chat_new(&ccfg);
  CHECK(chat != NULL);
  wshub_chat_free(chat);
  wshub_chat_free(NULL);

  /* install points the server callbacks at the chat */
  chat = wshub_chat_new(&ccfg);
  if (!CHECK(chat != NULL))
    return;
  wshub_config_t cfg;
  wshub_config_init(&cfg);
  CHECK(cfg.on_open == NULL && cfg.on_message == NULL && cfg.on_close == NULL &&
        cfg.user == NULL);
  wshub_chat_install(chat, &cfg);
  CHECK(cfg.on_open != NULL);
  CHECK(cfg.on_message != NULL);
  CHECK(cfg.on_close != NULL);
  CHECK(cfg.user == chat);
  wshub_chat_free(chat);
}

/* Drives the installed callbacks with clients that have no connection:
 * replies are cancelled, but rooms, history and nick storage are real and
 * must all be freed (valgrind checks the frees). */
static void test_chat_callbacks(unit_t *T) {
  wshub_chat_config_t ccfg;
  wshub_chat_config_init(&ccfg);
  ccfg.history = 3; /* small, so the ring wraps */
  ccfg.max_text = 10;
  wshub_chat_t *chat = wshub_chat_new(&ccfg);
  if (!CHECK(chat != NULL))
    return;
  chat_env_t env = {0};
  if (!CHECK_EQ_INT(uv_loop_init(&env.loop), 0)) {
    wshub_chat_free(chat);
    return;
  }
  env.loop.data = &env;
  wshub_config_t cfg;
  wshub_config_init(&cfg);
  wshub_chat_install(chat, &cfg);
  wshub_server_t *s = NULL;
  if (!CHECK_EQ_INT(wshub_server_new(&env.loop, &cfg, &s), 0)) {
    uv_loop_close(&env.loop);
    wshub_chat_free(chat);
    return;
  }

  static const struct {
    const char *target;
    const char *room; /* expected first room */
  } opens[] = {
      {"/?room=dev&nick=ann", "dev"}, {"/", "lobby"},
      {"/?room=bad%20room", "lobby"}, /* invalid room: lobby */
      {"/?room=dev&nick=%01", "dev"}, /* bad nick: still joins */
      {"/?room=dev&after=1", "dev"},  /* resume */
  };
  enum { NC = sizeof(opens) / sizeof(opens[0]) };
  wshub_client_t *cs[NC];
  for (size_t i = 0; i < NC; i++) {
    cs[i] = wshub_hub_client_new(s, NULL, "test");
    if (!CHECK(cs[i] != NULL))
      return;
    wshub_request_t req;
    memset(&req, 0, sizeof(req));
    req.method = 1;
    req.http_major = 1;
    req.http_minor = 1;
    req.target = opens[i].target;
    req.target_len = strlen(opens[i].target);
    req.upgrade = 1;
    req.remote = "test";
    CHECK_EQ_INT(cfg.on_open(cs[i], &req, cfg.user), 0);
    CHECK(wshub_client_data(cs[i]) != NULL); /* the nick store */
    if (CHECK_EQ_INT(wshub_client_room_count(cs[i]), 1))
      CHECK_EQ_STR(wshub_client_room(cs[i], 0), opens[i].room);
    if (i == 0) {
      /* Messages: more than the ring holds, one too long, one empty. */
      static const char *const msgs[] = {"one",  "two",         "three", "four",
                                         "five", "0123456789X", ""};
      for (size_t k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++)
        cfg.on_message(cs[0], msgs[k], strlen(msgs[k]), 0, cfg.user);
      static const char *const json[] = {
          "{\"type\":\"message\",\"text\":\"six\"}",
          "{\"type\":\"message\",\"params\":{\"value\":\"seven\"}}",
          "{\"type\":\"nick\",\"name\":\"anna\"}",
          "{\"type\":\"nick\",\"name\":\"   \"}",
          "{\"type\":\"join\",\"room\":\"ops\"}",
          "{\"type\":\"join\",\"room\":\"bad room\"}",
          "{\"type\":\"message\",\"room\":\"ops\",\"text\":\"hi ops\"}",
          "{\"type\":\"resume\",\"room\":\"ops\",\"after\":0}",
          "{\"type\":\"message\",\"to\":\"c1\",\"text\":\"me\"}",
          "{\"type\":\"message\",\"to\":\"c999\",\"text\":\"nobody\"}",
          "{\"type\":\"bogus\"}",
          "{not json",
          "{\"type\":\"message\",\"text\":\"a\",\"text\":\"b\"}",
      };
      for (size_t k = 0; k < sizeof(json) / sizeof(json[0]); k++)
        cfg.on_message(cs[0], json[k], strlen(json[k]), 0, cfg.user);
      cfg.on_message(cs[0], "\x01\x02", 2, 1, cfg.user); /* binary */
      const char *want[] = {"dev", "ops"};
      CHECK_EQ_INT(wshub_client_room_count(cs[0]), 2);
      CHECK_EQ_STR(wshub_client_room(cs[0], 0), want[0]);
      CHECK_EQ_STR(wshub_client_room(cs[0], 1), want[1]);
    }
  }
  /* c2 (lobby) leaves via the protocol; the room empties and goes. */
  const char *leave = "{\"type\":\"leave\",\"room\":\"lobby\"}";
  size_t rooms_before = wshub_room_count(s);
  cfg.on_message(cs[1], leave, strlen(leave), 0, cfg.user);
  CHECK_EQ_INT(wshub_client_room_count(cs[1]), 0);
  /* cs[2] is still in lobby */
  CHECK_EQ_INT(wshub_room_count(s), rooms_before);
  CHECK_EQ_INT(wshub_in_room(cs[2], "lobby"), 1);
  CHECK_EQ_INT(wshub_in_room(cs[1], "lobby"), 0);

  /* Every client goes the way ws.c does it: on_close, then free. */
  for (size_t i = 0; i < NC; i++) {
    cfg.on_close(cs[i], 1000, "", cfg.user);
    CHECK(wshub_client_data(cs[i]) == NULL);
    wshub_hub_client_free(cs[i]);
  }
  CHECK_EQ_INT(wshub_client_count(s), 0);
  CHECK_EQ_INT(wshub_room_count(s), 0);
  wshub_close(s, chat_on_server_closed);
  CHECK_EQ_INT(uv_run(&env.loop, UV_RUN_DEFAULT), 0);
  CHECK_EQ_INT(env.closed, 1);
  CHECK_EQ_INT(uv_loop_close(&env.loop), 0);
  wshub_chat_free(chat); /* frees the rooms' history rings */
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  test_room_valid(T);
  test_nick_valid(T);
  test_query_param(T);
  test_chat_object(T);
  test_chat_callbacks(T);
  return unit_finish(T);
}
