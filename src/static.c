/* static.c — files under the public root (see static.h).
 *
 * Resolution is pure and strict (no "..", no encoded slashes, no NUL, no
 * dotfiles). Serving happens off the loop thread where it can block: the
 * work item resolves symlinks with realpath(), checks that the result is
 * still under the root, opens and fstat()s the file; the loop then writes
 * the head and streams the body in CHUNK-sized uv_fs_read()s, reading the
 * next chunk only when the connection's backlog is low.
 */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"
#include "server.h"

#define STATIC_CHUNK (64 * 1024)

/* Ends a segment [seg, *o) of out: drops "." and empty ones, refuses "..",
 * and dotfiles other than .well-known. */
static int static_end_segment(char *out, size_t seg, size_t *o) {
  size_t n = *o - seg;
  const char *p = out + seg;
  if (n == 0 || (n == 1 && p[0] == '.')) {
    *o = seg;
    return 0;
  }
  if (p[0] == '.' && !(n == 11 && memcmp(p, ".well-known", 11) == 0))
    return UV_ENOENT; /* "..", and hidden files */
  return 1;
}

int wshub_static_resolve(const char *target, size_t len, char *out,
                         size_t cap) {
  size_t i = 0;
  if (len >= 7 && (strncasecmp(target, "http://", 7) == 0 ||
                   (len >= 8 && strncasecmp(target, "https://", 8) == 0))) {
    i = target[4] == ':' ? 7 : 8;
    while (i < len && target[i] != '/' && target[i] != '?' && target[i] != '#')
      i++;
    if (i == len || target[i] != '/') {
      target = "/";
      len = 1;
      i = 0;
    }
  }
  if (i >= len || target[i] != '/')
    return UV_EINVAL;
  size_t o = 0;   /* bytes written to out */
  size_t seg = 0; /* start of the current segment in out */
  int trailing = 1;
  for (; i < len && target[i] != '?' && target[i] != '#'; i++) {
    int ch = (unsigned char)target[i];
    if (ch == '%') {
      int hi = i + 2 < len ? wshub_hex_digit(target[i + 1]) : -1;
      int lo = i + 2 < len ? wshub_hex_digit(target[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return UV_EINVAL;
      ch = hi * 16 + lo;
      i += 2;
      if (ch == 0 || ch == '/' || ch == '\\')
        return UV_ENOENT;
    } else if (ch == 0) {
      return UV_ENOENT;
    } else if (ch == '/') {
      int r = static_end_segment(out, seg, &o);
      if (r < 0)
        return r;
      if (r == 1) {
        if (o + 1 >= cap)
          return UV_ENAMETOOLONG;
        out[o++] = '/';
      }
      seg = o;
      trailing = 1;
      continue;
    }
    if (o + 1 >= cap)
      return UV_ENAMETOOLONG;
    out[o++] = (char)ch;
    trailing = 0;
  }
  int r = static_end_segment(out, seg, &o);
  if (r < 0)
    return r;
  if (r == 1)
    trailing = 0;
  if (trailing) {
    /* Path ends in a directory: its index. */
    static const char index[] = "index.html";
    if (o + sizeof(index) > cap)
      return UV_ENAMETOOLONG;
    memcpy(out + o, index, sizeof(index));
    return (int)(o + sizeof(index) - 1);
  }
  if (o > 0 && out[o - 1] == '/')
    o--;
  out[o] = '\0';
  return (int)o;
}

const char *wshub_static_mime(const char *path) {
  static const struct {
    const char *ext;
    const char *type;
  } types[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"json", "application/json"},
      {"map", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"svg", "image/svg+xml"},
      {"ico", "image/x-icon"},
      {"webp", "image/webp"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"otf", "font/otf"},
      {"ttf", "font/ttf"},
      {"wasm", "application/wasm"},
      {"xml", "application/xml"},
      {"webmanifest", "application/manifest+json"},
  };
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  if (dot != NULL && (slash == NULL || dot > slash)) {
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
      if (strcasecmp(dot + 1, types[i].ext) == 0)
        return types[i].type;
  }
  return "application/octet-stream";
}

struct wshub_static_resp_s {
  uv_work_t work;
  uv_fs_t fs;
  wshub_http_t *http;         /* NULL once the connection is gone */
  wshub_conn_t *conn;         /* held while the response exists */
  const wshub_request_t *req; /* http's, valid while http != NULL */
  char path[PATH_MAX];
  int fd;
  int err; /* from the work item: 0 or -errno */
  int not_regular;
  struct stat st;
  uint64_t off, end;
  wshub_buf_t *chunk;
  uint8_t reading;
  uint8_t want_body; /* GET: the work item may read a small file */
};

/* Off the loop: resolve symlinks, confine to the root, open, stat. */
static void static_work(uv_work_t *w) {
  wshub_static_resp_t *r = w->data;
  const wshub_server_t *s = r->conn->server;
  char real[PATH_MAX];
  for (int attempt = 0; attempt < 2; attempt++) {
    if (realpath(r->path, real) == NULL) {
      r->err = -errno;
      return;
    }
    if (strncmp(real, s->root, s->root_len) != 0 ||
        (real[s->root_len] != '/' && real[s->root_len] != '\0')) {
      r->err = UV_ENOENT; /* a symlink leading out of the root */
      return;
    }
    struct stat st;
    if (stat(real, &st) != 0) {
      r->err = -errno;
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      size_t rl = strlen(real);
      if (attempt == 1 || rl + sizeof("/index.html") > sizeof(r->path)) {
        r->err = UV_ENOENT;
        return;
      }
      memcpy(r->path, real, rl);
      memcpy(r->path + rl, "/index.html", sizeof("/index.html"));
      continue;
    }
    if (!S_ISREG(st.st_mode)) {
      r->not_regular = 1;
      return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      r->err = -errno;
      return;
    }
    if (fstat(fd, &r->st) != 0 || r->st.st_ino != st.st_ino ||
        r->st.st_dev != st.st_dev || !S_ISREG(r->st.st_mode)) {
      close(fd); /* swapped under us */
      r->err = UV_ENOENT;
      return;
    }
    r->fd = fd;
    memcpy(r->path, real, strlen(real) + 1);
    /* Small files: read them here too, saving a second trip through the
     * threadpool. */
    if (r->want_body && r->st.st_size > 0 && r->st.st_size <= STATIC_CHUNK) {
      r->chunk = wshub_buf_new((size_t)r->st.st_size);
      if (r->chunk != NULL) {
        ssize_t n = pread(fd, r->chunk->data, r->chunk->cap, 0);
        r->chunk->len = n > 0 ? (size_t)n : 0;
      }
    }
    return;
  }
}

static void static_free(wshub_static_resp_t *r) {
  if (r->fd >= 0)
    close(r->fd);
  wshub_buf_unref(r->chunk);
  wshub_conn_release(r->conn);
  free(r);
}

/* The response cannot be completed as promised: drop the connection. Its
 * on_free detaches the response, which frees it (no callback is pending:
 * every caller runs after the response's last one). */
static void static_abort(wshub_static_resp_t *r) {
  wshub_conn_close(r->conn);
}

static void static_done(wshub_static_resp_t *r) {
  wshub_http_t *h = r->http;
  static_free(r);
  wshub_http_finish(h);
}

static void static_read_next(wshub_static_resp_t *r);

static void static_on_read(uv_fs_t *req) {
  wshub_static_resp_t *r = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  r->reading = 0;
  if (r->http == NULL) {
    static_free(r);
    return;
  }
  if (n <= 0) {
    /* The file shrank or failed under us: the promised length can't be
     * kept, so the connection must not be reused. */
    wshub_log(r->conn->server, WSHUB_LOG_WARN, "read %s: %s", r->path,
              n < 0 ? uv_strerror((int)n) : "unexpected end of file");
    static_abort(r);
    return;
  }
  r->chunk->len = (size_t)n;
  r->off += (uint64_t)n;
  int err = wshub_conn_send_buf(r->conn, r->chunk);
  wshub_buf_unref(r->chunk);
  r->chunk = NULL;
  if (err != 0) {
    static_abort(r);
    return;
  }
  if (r->off >= r->end) {
    static_done(r);
    return;
  }
  if (r->conn->queued < 2 * STATIC_CHUNK)
    static_read_next(r);
}

static void static_read_next(wshub_static_resp_t *r) {
  if (r->reading)
    return;
  uint64_t left = r->end - r->off;
  size_t n = left < STATIC_CHUNK ? (size_t)left : STATIC_CHUNK;
  r->chunk = wshub_buf_new(n);
  if (r->chunk == NULL) {
    static_abort(r);
    return;
  }
  uv_buf_t b = uv_buf_init(r->chunk->data, (unsigned)n);
  r->fs.data = r;
  r->reading = 1;
  int err = uv_fs_read(r->conn->server->loop, &r->fs, r->fd, &b, 1,
                       (int64_t)r->off, static_on_read);
  if (err != 0) {
    r->reading = 0;
    static_abort(r);
  }
}

void wshub_static_on_written(wshub_static_resp_t *r) {
  if (!r->reading && r->chunk == NULL && r->fd >= 0 && r->off < r->end &&
      r->conn->queued < 2 * STATIC_CHUNK)
    static_read_next(r);
}

void wshub_static_detach(wshub_static_resp_t *r) {
  r->http = NULL;
  /* Free now unless a callback is still to come. */
  if (!r->reading && r->work.data == NULL)
    static_free(r);
}

static void static_etag(const struct stat *st, char *out, size_t cap) {
  snprintf(out, cap, "\"%llx-%llx\"", (unsigned long long)st->st_size,
           (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
               (unsigned long long)st->st_mtim.tv_nsec);
}

/* RFC 9110 §13.1.2: weak comparison, "*" matches any current file. */
static int static_etag_matches(const char *list, size_t len, const char *etag) {
  size_t el = strlen(etag);
  size_t i = 0;
  while (i < len) {
    while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
      i++;
    if (i < len && list[i] == '*')
      return 1;
    if (i + 2 <= len && list[i] == 'W' && list[i + 1] == '/')
      i += 2;
    size_t start = i;
    while (i < len && list[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
      end--;
    if (end - start == el && memcmp(list + start, etag, el) == 0)
      return 1;
  }
  return 0;
}

static int static_not_modified(const wshub_request_t *req,
                               const struct stat *st, const char *etag) {
  size_t len;
  const char *inm = wshub_request_header(req, "if-none-match", &len);
  if (inm != NULL)
    return static_etag_matches(inm, len, etag);
  const char *ims = wshub_request_header(req, "if-modified-since", &len);
  if (ims == NULL || len >= 64)
    return 0;
  char tmp[64];
  memcpy(tmp, ims, len);
  tmp[len] = '\0';
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  const char *end = strptime(tmp, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == NULL || *end != '\0')
    return 0;
  return st->st_mtim.tv_sec <= timegm(&tm);
}

static void static_after_work(uv_work_t *w, int status) {
  wshub_static_resp_t *r = w->data;
  w->data = NULL;
  wshub_server_work_end(r->conn->server);
  wshub_http_t *h = r->http;
  if (h == NULL) {
    static_free(r);
    return;
  }
  if (status != 0 || r->not_regular || r->err != 0) {
    int err = r->err;
    int code = 500;
    const char *why = "cannot read file";
    if (r->not_regular) {
      code = 403;
      why = "not a regular file";
    } else if (err == UV_ENOENT || err == UV_ENOTDIR || err == UV_ELOOP ||
               err == UV_ENAMETOOLONG) {
      code = 404;
      why = NULL;
    } else if (err == UV_EACCES || err == UV_EPERM) {
      code = 403;
      why = "permission denied";
    }
    static_free(r);
    wshub_http_error(h, code, why, 0, NULL);
    return;
  }
  char etag[64], lm[64], extra[384];
  static_etag(&r->st, etag, sizeof(etag));
  struct tm tm;
  gmtime_r(&r->st.st_mtim.tv_sec, &tm);
  strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  snprintf(extra, sizeof(extra),
           "Content-Type: %s\r\nETag: %s\r\nLast-Modified: %s\r\n"
           "Cache-Control: no-cache\r\n",
           wshub_static_mime(r->path), etag, lm);
  r->end = (uint64_t)r->st.st_size;
  int code = static_not_modified(r->req, &r->st, etag) ? 304 : 200;
  /* A 304 carries the length a 200 would have; it never has a body. */
  if (wshub_http_send_head(h, code, extra, r->end) != 0 || code == 304 ||
      wshub_http_is_head(h) || r->end == 0) {
    static_done(r);
    return;
  }
  r->off = 0;
  if (r->chunk != NULL) {
    if (r->chunk->len != r->end) {
      /* Changed between fstat and read: don't send a wrong length. */
      static_abort(r);
      return;
    }
    r->off = r->end;
    int err = wshub_conn_send_buf(r->conn, r->chunk);
    if (err != 0) {
      static_abort(r);
      return;
    }
    static_done(r);
    return;
  }
  static_read_next(r);
}

void wshub_static_serve(wshub_http_t *h, const wshub_request_t *req,
                        wshub_static_resp_t **out) {
  wshub_conn_t *c = wshub_http_conn(h);
  wshub_server_t *s = c->server;
  *out = NULL;
  if (req->method != 1 /* GET */ && req->method != 2 /* HEAD */) {
    wshub_http_error(h, 405, NULL, 0, "Allow: GET, HEAD\r\n");
    return;
  }
  if (s->root_len == 0) {
    wshub_http_error(h, 404, NULL, 0, NULL);
    return;
  }
  char rel[PATH_MAX];
  int n = wshub_static_resolve(req->target, req->target_len, rel,
                               sizeof(rel) - s->root_len - 16);
  if (n < 0) {
    wshub_http_error(h, n == UV_EINVAL ? 400 : 404,
                     n == UV_EINVAL ? "malformed request target" : NULL,
                     n == UV_EINVAL, NULL);
    return;
  }
  wshub_static_resp_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    wshub_http_error(h, 503, "out of memory", 1, NULL);
    return;
  }
  r->http = h;
  r->req = req;
  r->want_body = req->method == 1 /* GET */;
  r->conn = c;
  r->fd = -1;
  /* resolve() was given room for the root, a slash and the NUL. */
  memcpy(r->path, s->root, s->root_len);
  r->path[s->root_len] = '/';
  memcpy(r->path + s->root_len + 1, rel, (size_t)n + 1);
  wshub_conn_hold(c);
  r->work.data = r;
  wshub_server_work_begin(s);
  if (uv_queue_work(s->loop, &r->work, static_work, static_after_work) != 0) {
    wshub_server_work_end(s);
    r->work.data = NULL;
    static_free(r);
    wshub_http_error(h, 503, "busy", 1, NULL);
    return;
  }
  *out = r;
}
