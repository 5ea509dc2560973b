/* test_handshake.c — unit tests of handshake.c and request.c.
 *
 * Covers Sec-WebSocket-Accept (the RFC 6455 sample and pairs computed
 * independently with `openssl sha1 -binary | base64`), the header lookup
 * and token-list helpers, every validation rule of wshub_handshake_check
 * with its exact status and reason, subprotocol choice, and the exact
 * bytes of the 101 response head. Requests are built here from
 * "Name: value" lines, trimming values the way http.c's parser does.
 */
/* uv.h needs POSIX types (pthread_rwlock_t) that strict -std=c11 hides. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <string.h>
#include <uv.h>

#include "handshake.h"
#include "request.h"
#include "unit.h"
#include "unit_req.h"

#define GET 1  /* llhttp HTTP_GET */
#define HEAD 2 /* llhttp HTTP_HEAD */
#define POST 3 /* llhttp HTTP_POST */

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define H_HOST "Host: example.com"
#define H_UPG "Upgrade: websocket"
#define H_CONN "Connection: Upgrade"
#define H_KEY "Sec-WebSocket-Key: " RFC_KEY
#define H_VER "Sec-WebSocket-Version: 13"

#define R_KEY "Sec-WebSocket-Key must be base64 of 16 bytes"
#define R_VER "Sec-WebSocket-Version must be 13"

static void test_accept_key(unit_t *T) {
  char out[WSHUB_ACCEPT_LEN + 1];
  char longkey[301];

  memset(out, 'x', sizeof(out));
  CHECK_EQ_INT(wshub_handshake_accept_key(RFC_KEY, strlen(RFC_KEY), out), 0);
  CHECK_EQ_STR(out, RFC_ACCEPT);
  CHECK_EQ_INT(strlen(out), WSHUB_ACCEPT_LEN);

  CHECK_EQ_INT(wshub_handshake_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", 24, out),
               0);
  CHECK_EQ_STR(out, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
  CHECK_EQ_INT(wshub_handshake_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out),
               0);
  CHECK_EQ_STR(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
  CHECK_EQ_INT(wshub_handshake_accept_key("////////////////////Aw==", 24, out),
               0);
  CHECK_EQ_STR(out, "Llvpl/OdY3e0F2qq4xdfMsK91KE=");

  /* key_len is honoured: trailing bytes past it are ignored. */
  CHECK_EQ_INT(wshub_handshake_accept_key(RFC_KEY "junk", 24, out), 0);
  CHECK_EQ_STR(out, RFC_ACCEPT);

  /* Any length is hashed, not only 24 characters. */
  memset(longkey, 'k', 300);
  longkey[300] = '\0';
  CHECK_EQ_INT(wshub_handshake_accept_key(longkey, 300, out), 0);
  CHECK_EQ_STR(out, "0epks0nN8rNytIigCrEHZPQGWfI=");

  CHECK_EQ_INT(wshub_handshake_accept_key("", 0, out), UV_EINVAL);
  CHECK_EQ_INT(wshub_handshake_accept_key(RFC_KEY, 0, out), UV_EINVAL);
}

static void test_request_header(unit_t *T) {
  static const char *const lines[] = {"Host: a.example", "X-Dup: first",
                                      "hostname: nope",  "x-dup: second",
                                      "Empty:",          NULL};
  req_store_t s;
  const wshub_request_t *r = req_build(&s, GET, 1, 1, lines);
  size_t len = 99;
  const char *v;

  v = wshub_request_header(r, "host", &len);
  CHECK_MEM(v, len, "a.example", (size_t)9);
  v = wshub_request_header(r, "HOST", NULL);
  CHECK(v == s.headers[0].value);
  v = wshub_request_header(r, "X-DUP", &len);
  CHECK_MEM(v, len, "first", (size_t)5);
  v = wshub_request_header(r, "Hostname", &len);
  CHECK_MEM(v, len, "nope", (size_t)4);
  v = wshub_request_header(r, "Empty", &len);
  CHECK(v != NULL);
  CHECK_EQ_INT(len, 0);
  len = 99;
  CHECK(wshub_request_header(r, "Hos", &len) == NULL);
  CHECK(wshub_request_header(r, "Hosts", &len) == NULL);
  CHECK(wshub_request_header(r, "Upgrade", &len) == NULL);
  CHECK_EQ_INT(len, 99); /* untouched on a miss */
}

typedef struct {
  const char *value;
  const char *token;
  int want;
} token_row_t;

static void test_has_token(unit_t *T) {
  static const token_row_t rows[] = {
      {"Upgrade", "upgrade", 1},
      {"upgrade", "upgrade", 1},
      {"UPGRADE", "upgrade", 1},
      {"keep-alive, Upgrade", "upgrade", 1},
      {"keep-alive,Upgrade", "upgrade", 1},
      {"Upgrade, keep-alive", "upgrade", 1},
      {"keep-alive ,\tUpgrade\t, close", "upgrade", 1},
      {",, ,Upgrade,,", "upgrade", 1},
      {"upgrade2", "upgrade", 0},
      {"xupgrade", "upgrade", 0},
      {"upgrad", "upgrade", 0},
      {"up grade", "upgrade", 0},
      {"keep-alive", "upgrade", 0},
      {"keep-alive; upgrade", "upgrade", 0},
      {"", "upgrade", 0},
      {" , ", "upgrade", 0},
      {"websocket", "websocket", 1},
      {"WebSocket", "websocket", 1},
      {"h2c", "websocket", 0},
      {"h2c, websocket", "websocket", 1},
      {"websocket/13", "websocket", 0},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    int got = wshub_header_has_token(rows[i].value, strlen(rows[i].value),
                                     rows[i].token);
    if (!CHECK_EQ_INT(got, rows[i].want))
      fprintf(stderr, "  row %zu: \"%s\" has \"%s\"\n", i, rows[i].value,
              rows[i].token);
  }
  /* The length bounds the value: "upgradeX" cut at 7 is "upgrade". */
  CHECK_EQ_INT(wshub_header_has_token("upgradeX", 7, "upgrade"), 1);
  CHECK_EQ_INT(wshub_header_has_token("keep-alive, upgrade", 14, "upgrade"), 0);
}

typedef struct {
  const char *label;
  int method, major, minor;
  int status;
  const char *reason;
  const char *lines[MAX_LINES];
} check_row_t;

/* A row: what it tests, request line, expected status and reason, then
 * the header lines. */
/* clang-format off */
#define ROW(l, m, ma, mi, st, why, ...) {l, m, ma, mi, st, why, {__VA_ARGS__}}
/* clang-format on */
/* The valid request with one header replaced or dropped. */
#define ALL H_HOST, H_UPG, H_CONN, H_KEY, H_VER
#define KEY(k) H_HOST, H_UPG, H_CONN, "Sec-WebSocket-Key: " k, H_VER
#define VER(v) H_HOST, H_UPG, H_CONN, H_KEY, "Sec-WebSocket-Version:" v
#define R_UPG "Upgrade: websocket required"
#define R_CONN "Connection: upgrade required"

static void test_check_table(unit_t *T) {
  static const check_row_t rows[] = {
      ROW("valid", GET, 1, 1, 101, "", ALL),
      ROW("valid, other order", GET, 1, 1, 101, "", H_VER, H_KEY,
          "User-Agent: t", H_CONN, H_UPG, H_HOST),
      ROW("lower-case names", GET, 1, 1, 101, "", "host: h",
          "upgrade: websocket", "connection: upgrade",
          "sec-websocket-key: " RFC_KEY, "sec-websocket-version: 13"),
      ROW("HTTP/2.0 is later than 1.1", GET, 2, 0, 101, "", ALL),
      ROW("HTTP/1.2", GET, 1, 2, 101, "", ALL),
      /* each required header missing */
      ROW("missing Host", GET, 1, 1, 400, "missing Host", H_UPG, H_CONN, H_KEY,
          H_VER),
      ROW("missing Upgrade", GET, 1, 1, 400, R_UPG, H_HOST, H_CONN, H_KEY,
          H_VER),
      ROW("missing Connection", GET, 1, 1, 400, R_CONN, H_HOST, H_UPG, H_KEY,
          H_VER),
      ROW("missing key", GET, 1, 1, 400, "missing Sec-WebSocket-Key", H_HOST,
          H_UPG, H_CONN, H_VER),
      ROW("missing version", GET, 1, 1, 426, R_VER, H_HOST, H_UPG, H_CONN,
          H_KEY),
      /* request line */
      ROW("POST", POST, 1, 1, 400, "method must be GET", ALL),
      ROW("HEAD", HEAD, 1, 1, 400, "method must be GET", ALL),
      ROW("HTTP/1.0", GET, 1, 0, 400, "HTTP/1.1 required", ALL),
      ROW("HTTP/0.9", GET, 0, 9, 400, "HTTP/1.1 required", ALL),
      /* Upgrade and Connection token lists */
      ROW("Upgrade: WebSocket", GET, 1, 1, 101, "", H_HOST,
          "Upgrade: WebSocket", H_CONN, H_KEY, H_VER),
      ROW("Upgrade: h2c", GET, 1, 1, 400, R_UPG, H_HOST, "Upgrade: h2c", H_CONN,
          H_KEY, H_VER),
      ROW("Upgrade: websocket2", GET, 1, 1, 400, R_UPG, H_HOST,
          "Upgrade: websocket2", H_CONN, H_KEY, H_VER),
      ROW("Upgrade: h2c, websocket", GET, 1, 1, 101, "", H_HOST,
          "Upgrade: h2c, websocket", H_CONN, H_KEY, H_VER),
      ROW("Connection: keep-alive, Upgrade", GET, 1, 1, 101, "", H_HOST, H_UPG,
          "Connection: keep-alive, Upgrade", H_KEY, H_VER),
      ROW("Connection: upgrade", GET, 1, 1, 101, "", H_HOST, H_UPG,
          "Connection: upgrade", H_KEY, H_VER),
      ROW("Connection: keep-alive", GET, 1, 1, 400, R_CONN, H_HOST, H_UPG,
          "Connection: keep-alive", H_KEY, H_VER),
      ROW("Connection: Upgraded", GET, 1, 1, 400, R_CONN, H_HOST, H_UPG,
          "Connection: Upgraded", H_KEY, H_VER),
      /* Sec-WebSocket-Key */
      ROW("other 16-byte key", GET, 1, 1, 101, "",
          KEY("MDEyMzQ1Njc4OWFiY2RlZg==")),
      ROW("key of 15 bytes", GET, 1, 1, 400, R_KEY,
          KEY("MDEyMzQ1Njc4OWFiY2Rl")),
      ROW("key of 17 bytes (24 chars, one '=')", GET, 1, 1, 400, R_KEY,
          KEY("MDEyMzQ1Njc4OWFiY2RlZmc=")),
      ROW("key of 18 bytes (24 chars, no '=')", GET, 1, 1, 400, R_KEY,
          KEY("MDEyMzQ1Njc4OWFiY2RlZmdo")),
      ROW("key missing padding", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbXBsZSBub25jZQ")),
      ROW("key with three '='", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbXBsZSBub25jZ===")),
      ROW("key with '=' inside", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbXBsZSBub2=jZQ==")),
      ROW("key with two '=', one inside", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbXBsZSBu=25jZQ=A")),
      ROW("key starting with '='", GET, 1, 1, 400, R_KEY,
          KEY("=GhlIHNhbXBsZSBub25jZQ=A")),
      ROW("key with '*'", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbXBsZSBub25j*Q==")),
      ROW("key in base64url", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbXBsZSBub25j-_==")),
      ROW("key with inner space", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbX BsZSBub25jZQ=")),
      ROW("key with inner tab", GET, 1, 1, 400, R_KEY,
          KEY("dGhlIHNhbX\tBsZSBub25jZQ=")),
      ROW("empty key", GET, 1, 1, 400, R_KEY, KEY("")),
      ROW("two keys", GET, 1, 1, 400, "duplicate Sec-WebSocket-Key", H_HOST,
          H_UPG, H_CONN, H_KEY, H_KEY, H_VER),
      /* Sec-WebSocket-Version */
      ROW("version 12", GET, 1, 1, 426, R_VER, VER(" 12")),
      ROW("version 8", GET, 1, 1, 426, R_VER, VER(" 8")),
      ROW("version 013", GET, 1, 1, 426, R_VER, VER(" 013")),
      ROW("version 13, 8", GET, 1, 1, 426, R_VER, VER(" 13, 8")),
      ROW("version empty", GET, 1, 1, 426, R_VER, VER("")),
      ROW("version twice", GET, 1, 1, 426, R_VER, ALL, H_VER),
      ROW("version ' 13 ' trimmed by the parser", GET, 1, 1, 101, "",
          VER("  13 ")),
  };

  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    const check_row_t *row = &rows[i];
    req_store_t s;
    wshub_handshake_t hs;
    const wshub_request_t *r =
        req_build(&s, row->method, row->major, row->minor, row->lines);
    int rc;
    int ok = 1;

    memset(&hs, 0x55, sizeof(hs));
    rc = wshub_handshake_check(r, NULL, 0, &hs);
    ok &= CHECK_EQ_INT(hs.status, row->status);
    ok &= CHECK_EQ_STR(hs.reason, row->reason);
    ok &= CHECK_EQ_INT(rc, row->status == 101 ? 0 : UV_EINVAL);
    ok &= CHECK(hs.protocol == NULL);
    if (row->status == 101) {
      const char *key;
      size_t key_len = 0;
      char want[WSHUB_ACCEPT_LEN + 1];
      key = wshub_request_header(r, "Sec-WebSocket-Key", &key_len);
      ok &= CHECK_EQ_INT(wshub_handshake_accept_key(key, key_len, want), 0);
      ok &= CHECK_EQ_STR(hs.accept, want);
    }
    if (!ok)
      fprintf(stderr, "  in row %zu: %s\n", i, row->label);
  }
}

/* The version value arriving untrimmed is not "13" (the parser trims; the
 * check itself compares exactly). */
static void test_check_version_raw(unit_t *T) {
  static const char *const lines[] = {H_HOST, H_UPG, H_CONN,
                                      H_KEY,  H_VER, NULL};
  req_store_t s;
  wshub_handshake_t hs;
  const wshub_request_t *r = req_build(&s, GET, 1, 1, lines);

  s.headers[4].value = "13 ";
  s.headers[4].value_len = 3;
  CHECK_EQ_INT(wshub_handshake_check(r, NULL, 0, &hs), UV_EINVAL);
  CHECK_EQ_INT(hs.status, 426);
  s.headers[4].value = " 13";
  CHECK_EQ_INT(wshub_handshake_check(r, NULL, 0, &hs), UV_EINVAL);
  CHECK_EQ_INT(hs.status, 426);
  s.headers[4].value = "13";
  s.headers[4].value_len = 2;
  CHECK_EQ_INT(wshub_handshake_check(r, NULL, 0, &hs), 0);
  CHECK_EQ_INT(hs.status, 101);
  CHECK_EQ_STR(hs.accept, RFC_ACCEPT);
  CHECK_EQ_STR(hs.reason, "");
}

typedef struct {
  const char *label;
  size_t nconf; /* how many of the configured list to pass */
  int want;     /* index into the configured list, or -1 for NULL */
  const char *lines[MAX_LINES];
} proto_row_t;

/* clang-format off */
#define PROTO(l, nconf, want, ...) {l, nconf, want, {ALL, __VA_ARGS__}}
/* clang-format on */
#define SWP "Sec-WebSocket-Protocol: "

static void test_subprotocol(unit_t *T) {
  static const char *const conf[] = {"chat", "superchat", "v2.chat"};
  static const proto_row_t rows[] = {
      PROTO("none offered", 3, -1, "X-None: 1"),
      PROTO("one offered, matching", 3, 0, SWP "chat"),
      PROTO("client order wins", 3, 1, SWP "superchat, chat"),
      PROTO("client order wins (2)", 3, 2, SWP "v2.chat,chat,superchat"),
      PROTO("skips unknown", 3, 0, SWP "foo, bar ,chat"),
      PROTO("OWS and empty elements", 3, 1, SWP ", \t,superchat\t ,"),
      PROTO("spread over two headers", 3, 1, SWP "foo", "X-Other: chat",
            "sec-websocket-protocol: bar,  superchat"),
      PROTO("first header wins over second", 3, 2, SWP "v2.chat", SWP "chat"),
      PROTO("case-sensitive", 3, -1, SWP "Chat, SUPERCHAT"),
      PROTO("no prefix match", 3, -1, SWP "chat2, cha"),
      PROTO("offered, none configured", 0, -1, SWP "chat"),
      PROTO("offered, not in the shorter list", 1, -1, SWP "superchat"),
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    req_store_t s;
    wshub_handshake_t hs;
    const wshub_request_t *r = req_build(&s, GET, 1, 1, rows[i].lines);
    int ok = 1;
    int rc = wshub_handshake_check(r, rows[i].nconf ? conf : NULL,
                                   rows[i].nconf, &hs);
    ok &= CHECK_EQ_INT(rc, 0);
    ok &= CHECK_EQ_INT(hs.status, 101);
    if (rows[i].want < 0) {
      ok &= CHECK_EQ_STR(hs.protocol, NULL);
    } else {
      ok &= CHECK_EQ_STR(hs.protocol, conf[rows[i].want]);
      ok &= CHECK(hs.protocol == conf[rows[i].want]); /* the configured one */
    }
    if (!ok)
      fprintf(stderr, "  in row %zu: %s\n", i, rows[i].label);
  }

  /* A failed handshake chooses no protocol. */
  {
    static const char *const lines[] = {
        H_HOST, H_UPG, H_CONN, H_KEY, "Sec-WebSocket-Protocol: chat", NULL};
    req_store_t s;
    wshub_handshake_t hs;
    const wshub_request_t *r = req_build(&s, GET, 1, 1, lines);
    CHECK_EQ_INT(wshub_handshake_check(r, conf, 3, &hs), UV_EINVAL);
    CHECK_EQ_INT(hs.status, 426);
    CHECK(hs.protocol == NULL);
  }
}

static void test_response(unit_t *T) {
  static const char want_plain[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                                   "\r\n";
  static const char want_proto[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                                   "Sec-WebSocket-Protocol: chat\r\n"
                                   "\r\n";
  static const char *const conf[] = {"chat"};
  static const char *const lines[] = {
      H_HOST, H_UPG, H_CONN, H_KEY, H_VER, "Sec-WebSocket-Protocol: chat",
      NULL};
  size_t plain_len = sizeof(want_plain) - 1;
  size_t proto_len = sizeof(want_proto) - 1;
  req_store_t s;
  wshub_handshake_t hs;
  char buf[512];
  size_t n;

  CHECK_EQ_INT(
      wshub_handshake_check(req_build(&s, GET, 1, 1, lines), NULL, 0, &hs), 0);
  memset(buf, '#', sizeof(buf));
  n = wshub_handshake_response(&hs, buf, sizeof(buf));
  CHECK_MEM(buf, n, want_plain, plain_len);
  CHECK(buf[plain_len] == '#'); /* nothing written past the head */
  n = wshub_handshake_response(&hs, buf, plain_len);
  CHECK_MEM(buf, n, want_plain, plain_len);
  CHECK_EQ_INT(wshub_handshake_response(&hs, buf, plain_len - 1), 0);
  CHECK_EQ_INT(wshub_handshake_response(&hs, buf, 10), 0);
  CHECK_EQ_INT(wshub_handshake_response(&hs, buf, 0), 0);

  CHECK_EQ_INT(
      wshub_handshake_check(req_build(&s, GET, 1, 1, lines), conf, 1, &hs), 0);
  CHECK_EQ_STR(hs.protocol, "chat");
  n = wshub_handshake_response(&hs, buf, sizeof(buf));
  CHECK_MEM(buf, n, want_proto, proto_len);
  n = wshub_handshake_response(&hs, buf, proto_len);
  CHECK_MEM(buf, n, want_proto, proto_len);
  CHECK_EQ_INT(wshub_handshake_response(&hs, buf, proto_len - 1), 0);
  CHECK_EQ_INT(wshub_handshake_response(&hs, buf, plain_len), 0);
}

/* The Origin policy: default same-host, explicit lists, "*". */
static void test_origin(unit_t *T) {
  static const struct {
    const char *origin; /* NULL: no Origin header */
    const char *host;
    int allowed_set; /* 0: default policy, 1: {a, b}, 2: {"*"} */
    int want;
  } rows[] = {
      {NULL, "example.com", 0, 1},
      {"http://example.com", "example.com", 0, 1},
      {"https://EXAMPLE.com", "example.com", 0, 1},
      {"http://localhost:3000", "localhost:3000", 0, 1},
      {"http://localhost:3001", "localhost:3000", 0, 0},
      {"http://evil.example", "example.com", 0, 0},
      {"http://example.com.evil", "example.com", 0, 0},
      {"null", "example.com", 0, 0},
      {"example.com", "example.com", 0, 0},
      {"http://", "example.com", 0, 0},
      {"https://a.example", "example.com", 1, 1},
      {"https://A.EXAMPLE", "example.com", 1, 1},
      {"https://b.example:8443", "x", 1, 1},
      {"https://b.example", "x", 1, 0},
      {"https://example.com", "example.com", 1, 0}, /* list replaces default */
      {NULL, "example.com", 1, 0},
      {"https://anything", "x", 2, 1},
      {NULL, "x", 2, 1},
  };
  static const char *const list[] = {"https://a.example",
                                     "https://b.example:8443"};
  static const char *const star[] = {"*"};
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    char host[128], origin[128];
    snprintf(host, sizeof(host), "Host: %s", rows[i].host);
    snprintf(origin, sizeof(origin), "Origin: %s",
             rows[i].origin ? rows[i].origin : "");
    const char *lines[] = {host, rows[i].origin ? origin : NULL, NULL};
    req_store_t st;
    const wshub_request_t *r = req_build(&st, GET, 1, 1, lines);
    const char *const *allowed = rows[i].allowed_set == 1   ? list
                                 : rows[i].allowed_set == 2 ? star
                                                            : NULL;
    size_t n = rows[i].allowed_set == 1 ? 2 : rows[i].allowed_set == 2 ? 1 : 0;
    if (!CHECK_EQ_INT(wshub_handshake_origin_ok(r, allowed, n), rows[i].want))
      fprintf(stderr, "  row %zu: origin %s host %s\n", i,
              rows[i].origin ? rows[i].origin : "(none)", rows[i].host);
  }
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  test_accept_key(T);
  test_request_header(T);
  test_has_token(T);
  test_check_table(T);
  test_check_version_raw(T);
  test_subprotocol(T);
  test_response(T);
  test_origin(T);
  return unit_finish(T);
}
