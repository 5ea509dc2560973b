/* test_static.c — unit tests of the pure part of static.c: request-target
 * to relative path (wshub_static_resolve) and Content-Type by extension
 * (wshub_static_mime), row by row against the rules in static.h. Every
 * rule has rows that must pass it and rows that must trip it.
 */
/* uv.h needs POSIX types (pthread_rwlock_t) that strict -std=c11 hides. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <string.h>
#include <uv.h>

#include "static.h"
#include "unit.h"

typedef struct {
  const char *target;
  size_t cap;       /* 0 → 256 */
  int rc;           /* expected return: length, or a UV_E* code */
  const char *want; /* expected path when rc >= 0 */
} resolve_row_t;

#define OK(target, path)                                                       \
  { target, 0, (int)sizeof(path) - 1, path }
#define ERR(target, code)                                                      \
  { target, 0, code, NULL }

static const resolve_row_t resolve_rows[] = {
    /* plain paths, "/" and trailing slashes */
    OK("/", "index.html"),
    OK("/index.html", "index.html"),
    OK("/a/b.txt", "a/b.txt"),
    OK("/d/", "d/index.html"),
    OK("/a/b/", "a/b/index.html"),
    OK("/chat.js", "chat.js"),
    /* query and fragment dropped */
    OK("/?x=1", "index.html"),
    OK("/a.html?x=1&y=/../", "a.html"),
    OK("/a.html#frag", "a.html"),
    OK("/a.html?q#f", "a.html"),
    OK("/a.html#f?q", "a.html"),
    OK("/d/?x", "d/index.html"),
    OK("/a?%zz", "a"), /* the query is not decoded */
    OK("/a#%00", "a"),
    ERR("/..?x", UV_ENOENT),
    /* absolute-form */
    OK("http://example.com/p", "p"),
    OK("https://example.com:8443/a/b", "a/b"),
    OK("http://example.com/p?q=1", "p"),
    OK("http://example.com/", "index.html"),
    ERR("http://example.com/../x", UV_ENOENT),
    ERR("http://example.com/%2e%2e/x", UV_ENOENT),
    /* other forms that do not start with '/' */
    ERR("", UV_EINVAL),
    ERR("a/b", UV_EINVAL),
    ERR("*", UV_EINVAL),
    ERR("example.com:443", UV_EINVAL),
    ERR("ftp://example.com/p", UV_EINVAL),
    ERR("?x", UV_EINVAL),
    /* percent-decoding */
    OK("/%41%62c", "Abc"),
    OK("/a%20b.txt", "a b.txt"),
    OK("/a%2etxt", "a.txt"),
    OK("/a%2Etxt", "a.txt"),
    OK("/%C3%A9t%c3%a9.html", "\xc3\xa9t\xc3\xa9.html"),
    OK("/a%3Fb", "a?b"),
    OK("/a%23b", "a#b"),
    OK("/100%25", "100%"),
    ERR("/a%", UV_EINVAL),
    ERR("/a%2", UV_EINVAL),
    ERR("/a%zz", UV_EINVAL),
    ERR("/a%g0", UV_EINVAL),
    ERR("/a%0g", UV_EINVAL),
    ERR("/%%41", UV_EINVAL),
    ERR("/a%-1", UV_EINVAL),
    /* NUL, encoded slash and backslash */
    ERR("/a%00b", UV_ENOENT),
    ERR("/%00", UV_ENOENT),
    ERR("/a%2fb", UV_ENOENT),
    ERR("/a%2Fb", UV_ENOENT),
    ERR("/a%5cb", UV_ENOENT),
    ERR("/a%5Cb", UV_ENOENT),
    ERR("/%2f", UV_ENOENT),
    /* ".." segments, literal or encoded */
    ERR("/..", UV_ENOENT),
    ERR("/../etc/passwd", UV_ENOENT),
    ERR("/a/../b", UV_ENOENT),
    ERR("/a/..", UV_ENOENT),
    ERR("/a/../", UV_ENOENT),
    ERR("/%2e%2e/x", UV_ENOENT),
    ERR("/%2E%2E/x", UV_ENOENT),
    ERR("/a/%2e%2e", UV_ENOENT),
    ERR("/.%2e/x", UV_ENOENT),
    ERR("/%2e./x", UV_ENOENT),
    OK("/a..b", "a..b"),
    OK("/a/b..", "a/b.."),
    OK("/a/b.c", "a/b.c"),
    /* dot segments: hidden vs .well-known */
    ERR("/.hidden", UV_ENOENT),
    ERR("/a/.git/config", UV_ENOENT),
    ERR("/.env", UV_ENOENT),
    ERR("/%2ehidden", UV_ENOENT),
    ERR("/..a", UV_ENOENT),
    ERR("/.well-knownx/a", UV_ENOENT),
    ERR("/.well-know/a", UV_ENOENT),
    OK("/.well-known/acme-challenge/t", ".well-known/acme-challenge/t"),
    OK("/a/.well-known", "a/.well-known"),
    OK("/.well-known/", ".well-known/index.html"),
    /* empty and "." segments dropped */
    OK("//a/./b", "a/b"),
    OK("/a//b", "a/b"),
    OK("/./a", "a"),
    OK("/a/./b/", "a/b/index.html"),
    OK("///x", "x"),
};

typedef struct {
  const char *target;
  size_t cap;
  int rc;
  const char *want;
} cap_row_t;

static const cap_row_t cap_rows[] = {
    {"/abcdefg", 8, 7, "abcdefg"},
    {"/abcdefgh", 8, UV_ENAMETOOLONG, NULL},
    {"/", 11, 10, "index.html"},
    {"/", 10, UV_ENAMETOOLONG, NULL},
    {"/d/", 13, 12, "d/index.html"},
    {"/d/", 12, UV_ENAMETOOLONG, NULL},
    /* The decoded length counts, not the raw one. */
    {"/%41%41%41", 4, 3, "AAA"},
    {"/%41%41%41%41", 4, UV_ENAMETOOLONG, NULL},
    {"//a/./b", 4, 3, "a/b"},
    {"/a.html?long-query-string", 7, 6, "a.html"},
};

static int resolve_one(unit_t *T, const char *target, size_t cap, int rc,
                       const char *want) {
  char out[512];
  int got;
  int ok = 1;
  memset(out, '#', sizeof(out));
  got = wshub_static_resolve(target, strlen(target), out, cap);
  ok &= CHECK_EQ_INT(got, rc);
  if (rc >= 0 && got >= 0) {
    ok &= CHECK_EQ_STR(out, want); /* also checks the NUL */
    ok &= CHECK(out[0] != '/');
  }
  if (cap < sizeof(out))
    ok &= CHECK(out[cap] == '#'); /* nothing past cap */
  if (!ok)
    fprintf(stderr, "  target \"%s\", cap %zu\n", target, cap);
  return ok;
}

static void test_resolve(unit_t *T) {
  for (size_t i = 0; i < sizeof(resolve_rows) / sizeof(resolve_rows[0]); i++) {
    const resolve_row_t *r = &resolve_rows[i];
    resolve_one(T, r->target, r->cap ? r->cap : 256, r->rc, r->want);
  }
  for (size_t i = 0; i < sizeof(cap_rows) / sizeof(cap_rows[0]); i++) {
    const cap_row_t *r = &cap_rows[i];
    resolve_one(T, r->target, r->cap, r->rc, r->want);
  }
}

/* The length argument bounds the target: bytes after it are not read. */
static void test_resolve_len(unit_t *T) {
  char out[64];
  CHECK_EQ_INT(wshub_static_resolve("/a.txtXYZ", 6, out, sizeof(out)), 5);
  CHECK_EQ_STR(out, "a.txt");
  CHECK_EQ_INT(wshub_static_resolve("/../", 1, out, sizeof(out)), 10);
  CHECK_EQ_STR(out, "index.html");
  /* A NUL inside the given length is not a terminator. */
  CHECK(wshub_static_resolve("/a\0b", 4, out, sizeof(out)) < 0);
}

typedef struct {
  const char *path;
  const char *mime;
} mime_row_t;

#define HTML "text/html; charset=utf-8"
#define JS "text/javascript; charset=utf-8"
#define CSS "text/css; charset=utf-8"
#define TXT "text/plain; charset=utf-8"
#define BIN "application/octet-stream"

static const mime_row_t mime_rows[] = {
    {"index.html", HTML},
    {"a.htm", HTML},
    {"app.js", JS},
    {"mod.mjs", JS},
    {"style.css", CSS},
    {"data.json", "application/json"},
    {"app.js.map", "application/json"},
    {"notes.txt", TXT},
    {"i.png", "image/png"},
    {"i.jpg", "image/jpeg"},
    {"i.jpeg", "image/jpeg"},
    {"i.gif", "image/gif"},
    {"i.svg", "image/svg+xml"},
    {"favicon.ico", "image/x-icon"},
    {"i.webp", "image/webp"},
    {"f.woff", "font/woff"},
    {"f.woff2", "font/woff2"},
    {"f.otf", "font/otf"},
    {"f.ttf", "font/ttf"},
    {"m.wasm", "application/wasm"},
    {"feed.xml", "application/xml"},
    {"site.webmanifest", "application/manifest+json"},
    {"a/b/c/deep.css", CSS},
    /* case-insensitive */
    {"INDEX.HTML", HTML},
    {"App.Js", JS},
    {"I.PNG", "image/png"},
    {"F.WOFF2", "font/woff2"},
    {"site.WebManifest", "application/manifest+json"},
    /* unknown */
    {"a.exe", BIN},
    {"Makefile", BIN},
    {"", BIN},
    {"a.", BIN},
    {"a.html.gz", BIN},
    {"a.htmlx", BIN},
    {"a.jsx", BIN},
    {"a.jso", BIN},
    {"a.woff3", BIN},
    {"html", BIN},
    {"a.d/readme", BIN},
};

static void test_mime(unit_t *T) {
  for (size_t i = 0; i < sizeof(mime_rows) / sizeof(mime_rows[0]); i++) {
    const char *got = wshub_static_mime(mime_rows[i].path);
    if (!CHECK_EQ_STR(got, mime_rows[i].mime))
      fprintf(stderr, "  path \"%s\"\n", mime_rows[i].path);
  }
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  test_resolve(T);
  test_resolve_len(T);
  test_mime(T);
  return unit_finish(T);
}
