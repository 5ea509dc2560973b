/* fuzz_harness.c — the loopback harness of the libFuzzer targets (see
 * fuzz_harness.h).
 *
 * Clients are plain non-blocking sockets watched by a uv_poll_t on the same
 * loop as the server, so uv_run(UV_RUN_ONCE) wakes for the client's bytes,
 * the server's sockets, its timers and its threadpool completions alike; a
 * one-shot deadline timer bounds every pump. A client closes its socket as
 * soon as it reads end-of-file (or an error), which lets a lingering server
 * connection finish at once.
 */
#include "fuzz_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

struct fz_client_s {
  fz_t *f;
  uv_poll_t poll;
  int fd;
  fz_script_t s;
  size_t pre_off, body_off;
  char head[1024]; /* the first bytes received */
  size_t head_len;
  size_t received;
  uint8_t used;      /* slot in use for this input */
  uint8_t head_seen; /* "\r\n\r\n" among the first bytes */
  uint8_t shut;      /* shutdown(SHUT_WR) done */
  uint8_t write_dead;
  uint8_t done;   /* end of file read; socket closed */
  uint8_t closed; /* poll handle closed */
};

struct fz_s {
  uv_loop_t loop;
  uv_timer_t deadline;
  int expired;
  wshub_server_t *server;
  int listen_fd;         /* listening on 127.0.0.1, one port for every input */
  size_t base_handles;   /* loop handles with no server */
  size_t server_handles; /* loop handles of an idle server */
  int base_fds;          /* fz_server_fds() with no server */
  int verbose;           /* FUZZ_VERBOSE=1: a line per client per input */
  fz_client_t clients[FZ_MAX_CLIENTS];
  char public_dir[256];
  char scratch[64 * 1024];
};

static void fz_die(const char *what) {
  fprintf(stderr, "fuzz harness: %s\n", what);
  abort();
}

static void fz_die_errno(const char *what) {
  fprintf(stderr, "fuzz harness: %s: %s\n", what, strerror(errno));
  abort();
}

/* One listening socket for the whole run: each input's server gets a
 * duplicate (wshub_listen_fd), so servers come and go without binding a
 * new port each time. */
static int fz_listen_socket(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fz_die_errno("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    fz_die_errno("bind 127.0.0.1:0");
  if (listen(fd, 64) != 0)
    fz_die_errno("listen");
  return fd;
}

static void fz_count_handle(uv_handle_t *h, void *arg) {
  (void)h;
  (*(size_t *)arg)++;
}

static size_t fz_handles(fz_t *f) {
  size_t n = 0;
  uv_walk(&f->loop, fz_count_handle, &n);
  return n;
}

/* Descriptors the server could leak: sockets and files under the public
 * directory. (Counting every descriptor would also see libFuzzer's own,
 * e.g. its symbolizer pipes.) */
static int fz_server_fds(const fz_t *f) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    fz_die("cannot read /proc/self/fd");
  size_t plen = strlen(f->public_dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[64], target[512];
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(path, target, sizeof(target) - 1);
    if (len <= 0)
      continue;
    target[len] = '\0';
    if (strncmp(target, "socket:", 7) == 0 ||
        (plen > 0 && strncmp(target, f->public_dir, plen) == 0))
      n++;
  }
  closedir(d);
  return n;
}

static void fz_write_file(const char *dir, const char *name, const char *text,
                          size_t repeat) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *fp = fopen(path, "w");
  if (fp == NULL)
    fz_die("cannot create a public file");
  for (size_t i = 0; i < repeat; i++)
    fputs(text, fp);
  fclose(fp);
}

/* index.html, a few typed files, a directory with and one without an
 * index, a dotfile, .well-known, a file larger than one 64 KiB read chunk,
 * a FIFO (not a regular file) and a symlink leading out of the root. */
static void fz_make_public(fz_t *f) {
  const char *tmp = getenv("TMPDIR");
  snprintf(f->public_dir, sizeof(f->public_dir), "%s/wshub-fuzz-XXXXXX",
           tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  if (mkdtemp(f->public_dir) == NULL)
    fz_die("mkdtemp failed");
  const char *d = f->public_dir;
  char path[512];
  fz_write_file(d, "index.html", "<!doctype html><title>fuzz</title>\n", 1);
  fz_write_file(d, "a.txt", "hello\n", 1);
  fz_write_file(d, "app.js", "console.log(1);\n", 1);
  fz_write_file(d, "style.css", "body{}\n", 1);
  fz_write_file(d, "data.json", "{\"a\":1}\n", 1);
  fz_write_file(d, "empty.txt", "", 1);
  fz_write_file(d, "big.bin", "0123456789abcdef", 5000); /* 80000 bytes */
  fz_write_file(d, ".hidden", "secret\n", 1);
  snprintf(path, sizeof(path), "%s/sub", d);
  mkdir(path, 0755);
  fz_write_file(d, "sub/index.html", "<p>sub</p>\n", 1);
  snprintf(path, sizeof(path), "%s/noindex", d);
  mkdir(path, 0755);
  snprintf(path, sizeof(path), "%s/.well-known", d);
  mkdir(path, 0755);
  fz_write_file(d, ".well-known/security.txt", "Contact: none\n", 1);
  snprintf(path, sizeof(path), "%s/fifo", d);
  mkfifo(path, 0644);
  snprintf(path, sizeof(path), "%s/out", d);
  if (symlink("/etc", path) != 0)
    fz_die("cannot create a symlink");
}

static int fz_rm_entry(const char *path, const struct stat *st, int flag,
                       struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

fz_t *fz_new(int with_public) {
  fz_t *f = calloc(1, sizeof(*f));
  if (f == NULL)
    fz_die("out of memory");
  /* A peer that went away must not kill the process (the server writes
   * with write(2), the clients with MSG_NOSIGNAL). */
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&f->loop) != 0)
    fz_die("uv_loop_init failed");
  uv_timer_init(&f->loop, &f->deadline);
  f->deadline.data = f;
  if (with_public)
    fz_make_public(f);
  f->listen_fd = fz_listen_socket();
  f->base_handles = fz_handles(f);
  f->base_fds = fz_server_fds(f);
  const char *v = getenv("FUZZ_VERBOSE");
  f->verbose = v != NULL && strcmp(v, "1") == 0;
  return f;
}

void fz_free(fz_t *f) {
  if (f == NULL)
    return;
  uv_close((uv_handle_t *)&f->deadline, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  uv_loop_close(&f->loop);
  close(f->listen_fd);
  if (f->public_dir[0] != '\0')
    nftw(f->public_dir, fz_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  free(f);
}

const char *fz_public_dir(const fz_t *f) {
  return f->public_dir[0] != '\0' ? f->public_dir : NULL;
}

static void fz_on_deadline(uv_timer_t *t) {
  fz_t *f = t->data;
  f->expired = 1;
}

void fz_turn(fz_t *f) {
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until done(f, arg) holds; aborts past the deadline. */
static void fz_pump(fz_t *f, int (*done)(fz_t *, void *), void *arg,
                    const char *what) {
  f->expired = 0;
  uv_timer_start(&f->deadline, fz_on_deadline, FZ_DEADLINE_MS, 0);
  while (!done(f, arg)) {
    if (f->expired) {
      fprintf(stderr,
              "fuzz harness: %s: not reached in %d ms (server connections: "
              "%zu, loop handles: %zu, requests: %u)\n",
              what, FZ_DEADLINE_MS,
              f->server ? wshub_server_connections(f->server) : 0,
              fz_handles(f), f->loop.active_reqs.count);
      for (int i = 0; i < FZ_MAX_CLIENTS; i++) {
        const fz_client_t *c = &f->clients[i];
        if (c->used)
          fprintf(stderr,
                  "  client %d: sent %zu+%zu of %zu+%zu, received %zu, "
                  "head %d, shut %d, done %d\n",
                  i, c->pre_off, c->body_off, c->s.pre_len, c->s.body_len,
                  c->received, c->head_seen, c->shut, c->done);
      }
      abort();
    }
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  uv_timer_stop(&f->deadline);
}

wshub_server_t *fz_start(fz_t *f, const wshub_config_t *cfg) {
  if (f->server != NULL)
    fz_die("fz_start: a server is running");
  if (wshub_server_new(&f->loop, cfg, &f->server) != 0)
    fz_die("wshub_server_new failed");
  int fd = dup(f->listen_fd);
  if (fd < 0)
    fz_die_errno("dup");
  int r = wshub_listen_fd(f->server, fd);
  if (r != 0) {
    fprintf(stderr, "fuzz harness: wshub_listen_fd: %s\n", wshub_strerror(r));
    abort();
  }
  f->server_handles = fz_handles(f);
  return f->server;
}

/* ---- clients ---- */

static void fz_client_io(uv_poll_t *p, int status, int events);

static void fz_client_closed(uv_handle_t *h) {
  fz_client_t *c = h->data;
  c->closed = 1;
}

static void fz_client_end(fz_client_t *c) {
  if (c->done)
    return;
  c->done = 1;
  /* Stop polling before the descriptor can be reused. */
  uv_close((uv_handle_t *)&c->poll, fz_client_closed);
  close(c->fd);
  c->fd = -1;
}

/* The bytes that may be written now, if any. */
static const uint8_t *fz_client_next(const fz_client_t *c, size_t *len) {
  *len = 0;
  if (c->write_dead)
    return NULL;
  if (c->pre_off < c->s.pre_len) {
    *len = c->s.pre_len - c->pre_off;
    return c->s.pre + c->pre_off;
  }
  if (c->s.wait_head && !c->head_seen)
    return NULL;
  if (c->body_off < c->s.body_len) {
    *len = c->s.body_len - c->body_off;
    return c->s.body + c->body_off;
  }
  return NULL;
}

static int fz_client_all_sent(const fz_client_t *c) {
  return c->write_dead ||
         (c->pre_off == c->s.pre_len && c->body_off == c->s.body_len);
}

static void fz_client_arm(fz_client_t *c) {
  if (c->done)
    return;
  if (fz_client_all_sent(c) && !c->s.hold && !c->shut && !c->write_dead) {
    c->shut = 1;
    shutdown(c->fd, SHUT_WR);
  }
  size_t len;
  int events = UV_READABLE;
  if (fz_client_next(c, &len) != NULL)
    events |= UV_WRITABLE;
  if (uv_poll_start(&c->poll, events, fz_client_io) != 0)
    fz_client_end(c);
}

static void fz_client_write(fz_client_t *c) {
  size_t len;
  const uint8_t *p = fz_client_next(c, &len);
  if (p == NULL)
    return;
  if (c->s.chunk > 0 && len > c->s.chunk)
    len = c->s.chunk;
  ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      c->write_dead = 1; /* the server is gone: keep reading to the end */
    return;
  }
  if (c->pre_off < c->s.pre_len)
    c->pre_off += (size_t)n;
  else
    c->body_off += (size_t)n;
}

static void fz_client_read(fz_client_t *c) {
  fz_t *f = c->f;
  for (;;) {
    ssize_t n = recv(c->fd, f->scratch, sizeof(f->scratch), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      fz_client_end(c);
      return;
    }
    c->received += (size_t)n;
    if (!c->head_seen && c->head_len < sizeof(c->head) - 1) {
      size_t room = sizeof(c->head) - 1 - c->head_len;
      size_t k = (size_t)n < room ? (size_t)n : room;
      memcpy(c->head + c->head_len, f->scratch, k);
      c->head_len += k;
      c->head[c->head_len] = '\0';
      if (strstr(c->head, "\r\n\r\n") != NULL)
        c->head_seen = 1;
    }
  }
}

static void fz_client_io(uv_poll_t *p, int status, int events) {
  fz_client_t *c = p->data;
  if (status < 0) {
    fz_client_end(c);
    return;
  }
  if (events & (UV_READABLE | UV_DISCONNECT))
    fz_client_read(c);
  if (!c->done && (events & UV_WRITABLE))
    fz_client_write(c);
  fz_client_arm(c);
}

/* Connects a non-blocking socket (the kernel completes the handshake from
 * the listen backlog, before the server accepts). libFuzzer's SIGALRM may
 * interrupt any wait, hence poll() and SO_ERROR rather than a blocking
 * connect(); out of ephemeral ports (TIME_WAIT), it waits for one. */
static void fz_client_connect(int fd, const struct sockaddr_in *a) {
  for (int tries = 0;; tries++) {
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0)
      return;
    if (errno == EINPROGRESS || errno == EINTR || errno == EALREADY)
      break;
    if (errno != EADDRNOTAVAIL || tries >= 100)
      fz_die_errno("connect to the server");
    usleep(10000);
  }
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  int r;
  while ((r = poll(&p, 1, FZ_DEADLINE_MS)) < 0 && errno == EINTR)
    ;
  if (r == 0)
    fz_die("connect to the server: timed out");
  int err = 0;
  socklen_t len = sizeof(err);
  if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
    fz_die_errno("connect to the server");
  if (err != 0) {
    errno = err;
    fz_die_errno("connect to the server");
  }
}

fz_client_t *fz_connect(fz_t *f, const fz_script_t *script) {
  fz_client_t *c = NULL;
  for (int i = 0; i < FZ_MAX_CLIENTS && c == NULL; i++)
    if (!f->clients[i].used)
      c = &f->clients[i];
  if (c == NULL || f->server == NULL)
    fz_die("fz_connect: no client slot or no server");
  memset(c, 0, sizeof(*c));
  c->f = f;
  c->used = 1;
  c->s = *script;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c->fd < 0)
    fz_die_errno("socket");
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)wshub_server_port(f->server));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fz_client_connect(c->fd, &a);
  int r = uv_poll_init(&f->loop, &c->poll, c->fd);
  if (r != 0) {
    fprintf(stderr, "fuzz harness: uv_poll_init: %s\n", uv_strerror(r));
    abort();
  }
  c->poll.data = c;
  fz_client_arm(c);
  return c;
}

static int fz_head_or_done(fz_t *f, void *arg) {
  (void)f;
  const fz_client_t *c = arg;
  return c->head_seen || c->done;
}

void fz_wait_head(fz_t *f, fz_client_t *c) {
  fz_pump(f, fz_head_or_done, c, "response head");
}

static int fz_sent_or_done(fz_t *f, void *arg) {
  (void)f;
  const fz_client_t *c = arg;
  return fz_client_all_sent(c) || c->done;
}

void fz_wait_sent(fz_t *f, fz_client_t *c) {
  fz_pump(f, fz_sent_or_done, c, "client bytes sent");
}

int fz_status(const fz_client_t *c) {
  if (c->head_len < 12 || memcmp(c->head, "HTTP/1.1 ", 9) != 0)
    return 0;
  return atoi(c->head + 9);
}

size_t fz_received(const fz_client_t *c) {
  return c->received;
}

void fz_release(fz_t *f, fz_client_t *c) {
  c->s.hold = 0;
  if (!c->done)
    fz_client_arm(c);
  (void)f;
}

/* ---- settling ---- */

static int fz_idle(fz_t *f, void *arg) {
  (void)arg;
  for (int i = 0; i < FZ_MAX_CLIENTS; i++)
    if (f->clients[i].used && !f->clients[i].closed)
      return 0;
  return wshub_server_connections(f->server) == 0 &&
         f->loop.active_reqs.count == 0 && fz_handles(f) == f->server_handles;
}

static int fz_server_gone(fz_t *f, void *arg) {
  (void)arg;
  return fz_handles(f) == f->base_handles;
}

static void fz_on_server_closed(wshub_server_t *s) {
  (void)s;
}

void fz_finish(fz_t *f) {
  for (int i = 0; i < FZ_MAX_CLIENTS; i++)
    if (f->clients[i].used && f->clients[i].s.hold)
      fz_release(f, &f->clients[i]);
  fz_pump(f, fz_idle, NULL, "clients and server idle");
  wshub_close(f->server, fz_on_server_closed);
  fz_pump(f, fz_server_gone, NULL, "server closed");
  f->server = NULL;
  for (int i = 0; i < FZ_MAX_CLIENTS; i++) {
    fz_client_t *c = &f->clients[i];
    if (c->used && f->verbose)
      fprintf(stderr,
              "fuzz harness: client %d: sent %zu+%zu, received %zu, "
              "first response %d\n",
              i, c->pre_off, c->body_off, c->received, fz_status(c));
    c->used = 0;
  }
  int fds = fz_server_fds(f);
  if (fds != f->base_fds) {
    fprintf(stderr,
            "fuzz harness: %d sockets and public files open, %d before\n", fds,
            f->base_fds);
    fz_die("a descriptor leaked");
  }
}

/* ---- WebSocket helpers ---- */

size_t fz_frame(uint8_t b0, const uint8_t *payload, size_t len, uint8_t *out) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t o = 0;
  out[o++] = b0;
  if (len < 126) {
    out[o++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    out[o++] = 0x80 | 126;
    out[o++] = (uint8_t)(len >> 8);
    out[o++] = (uint8_t)len;
  } else {
    out[o++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      out[o++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(out + o, key, 4);
  o += 4;
  for (size_t i = 0; i < len; i++)
    out[o++] = payload[i] ^ key[i % 4];
  return o;
}

size_t fz_upgrade_request(const char *target, const char *extra, char *out,
                          size_t cap) {
  int n = snprintf(out, cap,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n",
                   target, extra ? extra : "");
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The one harness of a fuzz target (libFuzzer calls the target's entry
 * points with no context to carry it in). */
static fz_t *fz_the_one;

static void fz_once_free(void) {
  fz_free(fz_the_one);
  fz_the_one = NULL;
}

fz_t *fz_once(int with_public) {
  if (fz_the_one == NULL) {
    fz_the_one = fz_new(with_public);
    atexit(fz_once_free);
  }
  return fz_the_one;
}

static void fz_log(void *user, wshub_log_level_t level, const char *msg) {
  (void)user;
  if (level == WSHUB_LOG_ERROR)
    fprintf(stderr, "wshub error: %s\n", msg);
}

void fz_config_init(wshub_config_t *cfg) {
  wshub_config_init(cfg);
  cfg->log_level = WSHUB_LOG_DEBUG;
  cfg->log_cb = fz_log;
  cfg->header_timeout_ms = 2000;
  cfg->keepalive_timeout_ms = 2000;
  cfg->ping_interval_ms = 0;
  cfg->close_timeout_ms = 1000;
}
