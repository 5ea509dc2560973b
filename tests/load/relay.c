/* tests/load/relay.c — the benchmark baseline: a bare, single-threaded epoll
 * WebSocket relay that writes each client's frames once per loop turn.
 *
 * It does just enough WebSocket to be measured by wsload: the HTTP Upgrade
 * (only Sec-WebSocket-Key is looked at; the 101 carries the accept computed
 * with OpenSSL's SHA-1 and base64), masked client frames (fragments are
 * reassembled), ping → pong, close → close, and every data message goes to
 * every open client (the sender too) unchanged, as one unmasked text frame.
 * No chat protocol, no JSON, no UTF-8 check, no pings of its own.
 *
 * Batching: the frames relayed during one epoll_wait turn are appended once to
 * a shared turn buffer; at the end of the turn every open client gets one
 * sendmsg() of [its own pending bytes, the turn buffer]. Only what a client
 * could not take is copied into its own output buffer (a slow client costs a
 * copy; a fast one none), so output order is the same for every client.
 *
 * Ownership: struct relay owns the epoll, listening and signal descriptors,
 * the turn buffer, the read buffer and every struct client; a client owns its
 * socket, its unparsed input, its unsent output and its unfinished message.
 * Clients that die during a turn are freed at the end of it.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -Werror -o relay tests/load/relay.c
 * -lcrypto Run:   relay [--host ADDR] [--port N]   (prints "relay listening on
 * PORT")
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
  READ_CHUNK = 65536,
  MAX_HEAD = 8192,
  MAX_EVENTS = 1024,
  MAX_ACCEPTS = 512,      /* per turn */
  MAX_MESSAGE = 16 << 20, /* larger messages: close 1009 */
  MAX_BACKLOG = 64 << 20  /* unsent bytes before a client is dropped */
};

typedef struct {
  unsigned char *data;
  size_t off, len, cap; /* bytes [off, len) are pending */
} rbuf_t;

enum state { ST_HTTP, ST_OPEN, ST_CLOSING, ST_DEAD };

typedef struct client {
  int fd;
  enum state state;
  bool dirty, want_out;
  unsigned char msg_op; /* opcode of the unfinished message, 0 if none */
  size_t slot;          /* index in relay.all */
  rbuf_t in, out, msg;
} client_t;

typedef struct {
  client_t **v;
  size_t n, cap;
} cvec_t;

typedef struct {
  int epfd, lfd, sigfd;
  bool stop;
  cvec_t all, dirty, dead;
  rbuf_t turn;
  unsigned char rd[READ_CHUNK];
} relay_t;

static int rbuf_append(rbuf_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    unsigned char *d = realloc(b->data, cap);
    if (!d)
      return -1;
    b->data = d;
    b->cap = cap;
  }
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static void rbuf_free(rbuf_t *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

static int cvec_push(cvec_t *v, client_t *c) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    client_t **n = realloc(v->v, cap * sizeof *n);
    if (!n)
      return -1;
    v->v = n;
    v->cap = cap;
  }
  v->v[v->n++] = c;
  return 0;
}

/* Frame header for an unmasked server frame; returns its length. */
static size_t relay_header(unsigned char *h, unsigned char op, size_t len) {
  h[0] = (unsigned char)(0x80 | op);
  if (len < 126) {
    h[1] = (unsigned char)len;
    return 2;
  }
  if (len < 65536) {
    h[1] = 126;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    return 4;
  }
  h[1] = 127;
  for (int i = 0; i < 8; i++)
    h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
  return 10;
}

static void relay_kill(relay_t *r, client_t *c) {
  if (c->state == ST_DEAD)
    return;
  close(c->fd);
  client_t *last = r->all.v[--r->all.n];
  r->all.v[c->slot] = last;
  last->slot = c->slot;
  c->state = ST_DEAD;
  if (cvec_push(&r->dead, c) != 0)
    abort();
}

/* Frees the clients that died during this turn. */
static void relay_reap(relay_t *r) {
  for (size_t i = 0; i < r->dead.n; i++) {
    rbuf_free(&r->dead.v[i]->in);
    rbuf_free(&r->dead.v[i]->out);
    rbuf_free(&r->dead.v[i]->msg);
    free(r->dead.v[i]);
  }
  r->dead.n = 0;
}

static void relay_mark(relay_t *r, client_t *c) {
  if (c->dirty)
    return;
  c->dirty = true;
  if (cvec_push(&r->dirty, c) != 0)
    abort();
}

/* Queues a frame for this client alone (pong, close, handshake reply). */
static void relay_queue(relay_t *r, client_t *c, unsigned char op,
                        const void *p, size_t len) {
  unsigned char h[10];
  size_t hl = relay_header(h, op, len);
  if (rbuf_append(&c->out, h, hl) != 0 || rbuf_append(&c->out, p, len) != 0) {
    relay_kill(r, c);
    return;
  }
  relay_mark(r, c);
}

static void relay_fail(relay_t *r, client_t *c, unsigned code) {
  unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
  relay_queue(r, c, 0x8, p, 2);
  if (c->state != ST_DEAD)
    c->state = ST_CLOSING;
}

static void relay_broadcast(relay_t *r, const unsigned char *p, size_t len) {
  unsigned char h[10];
  size_t hl = relay_header(h, 0x1, len);
  if (rbuf_append(&r->turn, h, hl) != 0 || rbuf_append(&r->turn, p, len) != 0) {
    fprintf(stderr, "relay: out of memory\n");
    exit(1);
  }
}

static void relay_handshake(relay_t *r, client_t *c, char *head) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char *key = NULL, *line = head;
  size_t klen = 0;
  while (line && !key) {
    char *eol = strstr(line, "\r\n");
    if (!eol)
      eol = line + strlen(line);
    if (strncasecmp(line, "sec-websocket-key:", 18) == 0) {
      key = line + 18;
      while (*key == ' ' || *key == '\t')
        key++;
      klen = (size_t)(eol - key);
      while (klen && (key[klen - 1] == ' ' || key[klen - 1] == '\t'))
        klen--;
    }
    line = *eol ? eol + 2 : NULL;
  }
  if (!key || klen == 0 || klen > 64) {
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: "
                              "0\r\nConnection: close\r\n\r\n";
    if (rbuf_append(&c->out, bad, sizeof bad - 1) != 0) {
      relay_kill(r, c);
      return;
    }
    c->state = ST_CLOSING;
    relay_mark(r, c);
    return;
  }
  char cat[64 + sizeof guid], acc[32], resp[160];
  unsigned char sha[SHA_DIGEST_LENGTH];
  memcpy(cat, key, klen);
  memcpy(cat + klen, guid, sizeof guid - 1);
  SHA1((const unsigned char *)cat, klen + sizeof guid - 1, sha);
  EVP_EncodeBlock((unsigned char *)acc, sha, SHA_DIGEST_LENGTH);
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   acc);
  if (rbuf_append(&c->out, resp, (size_t)n) != 0) {
    relay_kill(r, c);
    return;
  }
  c->state = ST_OPEN;
  relay_mark(r, c);
}

/* Handles one complete, unmasked frame. */
static void relay_frame(relay_t *r, client_t *c, unsigned op, bool fin,
                        unsigned char *p, size_t len) {
  if (op & 0x8) {
    if (!fin || len > 125) {
      relay_fail(r, c, 1002);
      return;
    }
    if (op == 0x8) { /* close: answer with the same code, then close */
      relay_queue(r, c, 0x8, p, len >= 2 ? 2 : 0);
      if (c->state != ST_DEAD)
        c->state = ST_CLOSING;
    } else if (op == 0x9) {
      relay_queue(r, c, 0xA, p, len);
    } else if (op != 0xA) {
      relay_fail(r, c, 1002);
    }
    return;
  }
  if (op == 0x1 || op == 0x2) {
    if (c->msg_op) {
      relay_fail(r, c, 1002);
      return;
    }
    if (fin) {
      relay_broadcast(r, p, len);
      return;
    }
    c->msg_op = (unsigned char)op;
  } else if (op != 0x0 || !c->msg_op) {
    relay_fail(r, c, 1002);
    return;
  }
  if (c->msg.len + len > MAX_MESSAGE) {
    relay_fail(r, c, 1009);
    return;
  }
  if (rbuf_append(&c->msg, p, len) != 0) {
    relay_kill(r, c);
    return;
  }
  if (fin) {
    relay_broadcast(r, c->msg.data, c->msg.len);
    rbuf_free(&c->msg);
    c->msg_op = 0;
  }
}

/* Parses what it can of p[0..len); returns the bytes consumed. */
static size_t relay_parse(relay_t *r, client_t *c, unsigned char *p,
                          size_t len) {
  size_t pos = 0;
  if (c->state == ST_HTTP) {
    char *end = memmem(p, len, "\r\n\r\n", 4);
    if (!end) {
      if (len > MAX_HEAD)
        relay_kill(r, c);
      return 0;
    }
    *end = '\0'; /* the head is done with once answered */
    relay_handshake(r, c, (char *)p);
    pos = (size_t)(end - (char *)p) + 4;
  }
  while (c->state == ST_OPEN && len - pos >= 2) {
    unsigned b0 = p[pos], b1 = p[pos + 1];
    uint64_t plen = b1 & 0x7f;
    size_t hl = 2;
    if (plen == 126) {
      if (len - pos < 4)
        break;
      plen = (uint64_t)p[pos + 2] << 8 | p[pos + 3];
      hl = 4;
    } else if (plen == 127) {
      if (len - pos < 10)
        break;
      plen = 0;
      for (int i = 0; i < 8; i++)
        plen = plen << 8 | p[pos + 2 + i];
      hl = 10;
    }
    if (!(b1 & 0x80) || (b0 & 0x70)) {
      relay_fail(r, c, 1002);
      break;
    }
    if (plen > MAX_MESSAGE) {
      relay_fail(r, c, 1009);
      break;
    }
    hl += 4;
    if (len - pos < hl + plen)
      break;
    unsigned char *mask = p + pos + hl - 4, *pl = p + pos + hl;
    for (size_t i = 0; i < plen; i++)
      pl[i] ^= mask[i & 3];
    relay_frame(r, c, b0 & 0x0f, (b0 & 0x80) != 0, pl, (size_t)plen);
    pos += hl + (size_t)plen;
  }
  return pos;
}

static void relay_read(relay_t *r, client_t *c) {
  ssize_t n = read(c->fd, r->rd, sizeof r->rd);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    relay_kill(r, c);
    return;
  }
  if (c->state != ST_HTTP && c->state != ST_OPEN)
    return;             /* closing: ignore */
  if (c->in.len == 0) { /* the usual case: parse straight from rd */
    size_t used = relay_parse(r, c, r->rd, (size_t)n);
    if (c->state != ST_DEAD && used < (size_t)n &&
        rbuf_append(&c->in, r->rd + used, (size_t)n - used) != 0)
      relay_kill(r, c);
    return;
  }
  if (rbuf_append(&c->in, r->rd, (size_t)n) != 0) {
    relay_kill(r, c);
    return;
  }
  size_t used = relay_parse(r, c, c->in.data, c->in.len);
  if (c->state == ST_DEAD)
    return;
  if (used == c->in.len) {
    rbuf_free(&c->in);
  } else if (used) {
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
  }
}

static void relay_watch(relay_t *r, client_t *c, bool out) {
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                           .data.ptr = c};
  if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
    relay_kill(r, c);
    return;
  }
  c->want_out = out;
}

/* One sendmsg of [own pending bytes, turn]; keeps what the socket refused. */
static void relay_flush(relay_t *r, client_t *c, const rbuf_t *turn) {
  struct iovec iov[2];
  int niov = 0;
  size_t pend = c->out.len - c->out.off, tl = turn ? turn->len : 0;
  c->dirty = false;
  if (pend)
    iov[niov++] = (struct iovec){c->out.data + c->out.off, pend};
  if (tl)
    iov[niov++] = (struct iovec){turn->data, tl};
  if (niov) {
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      relay_kill(r, c);
      return;
    }
    size_t wn = w < 0 ? 0 : (size_t)w;
    if (wn >= pend) {
      c->out.off = c->out.len = 0;
      wn -= pend;
    } else {
      c->out.off += wn;
      wn = 0;
    }
    if (wn < tl && rbuf_append(&c->out, turn->data + wn, tl - wn) != 0) {
      relay_kill(r, c);
      return;
    }
  }
  if (c->out.len > c->out.off) {
    if (c->out.len - c->out.off > MAX_BACKLOG) {
      relay_kill(r, c);
      return;
    }
    if (!c->want_out)
      relay_watch(r, c, true);
    return;
  }
  rbuf_free(&c->out);
  if (c->state == ST_CLOSING) {
    relay_kill(r, c);
    return;
  }
  if (c->want_out)
    relay_watch(r, c, false);
}

static void relay_accept(relay_t *r) {
  for (int i = 0; i < MAX_ACCEPTS; i++) {
    int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      return; /* EAGAIN, or out of descriptors: next turn */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client_t *c = calloc(1, sizeof *c);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (!c || cvec_push(&r->all, c) != 0 ||
        epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      if (c && r->all.n && r->all.v[r->all.n - 1] == c)
        r->all.n--;
      free(c);
      close(fd);
      continue;
    }
    c->fd = fd;
    c->slot = r->all.n - 1;
  }
}

static int relay_listen(relay_t *r, const char *host, const char *port) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                  *res;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    fprintf(stderr, "relay: %s: %s\n", host, gai_strerror(rc));
    return -1;
  }
  int one = 1, fd = socket(res->ai_family,
                           SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
    perror("relay: listen");
    freeaddrinfo(res);
    return -1;
  }
  freeaddrinfo(res);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  unsigned p =
      ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
  fprintf(stderr, "relay listening on %u\n", p);
  r->lfd = fd;
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *port = "0";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
      host = argv[++i];
    else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = argv[++i];
    else {
      fprintf(stderr,
              "usage: relay [--host ADDR] [--port N]   (0 = any free port)\n");
      return 2;
    }
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  relay_t *r = calloc(1, sizeof *r);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (!r || (r->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
      relay_listen(r, host, port) != 0)
    return 1;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &r->lfd};
  epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->lfd, &ev);
  ev.data.ptr = &r->sigfd;
  epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->sigfd, &ev);
  struct epoll_event evs[MAX_EVENTS];
  while (!r->stop) {
    int n = epoll_wait(r->epfd, evs, MAX_EVENTS, -1);
    if (n < 0 && errno != EINTR) {
      perror("relay: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &r->lfd) {
        relay_accept(r);
        continue;
      }
      if (p == &r->sigfd) {
        r->stop = true;
        continue;
      }
      client_t *c = p;
      if (c->state == ST_DEAD)
        continue;
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        relay_read(r, c);
      if (c->state != ST_DEAD && (evs[i].events & EPOLLOUT))
        relay_mark(r, c);
    }
    if (r->turn.len) /* downwards: a kill moves the last client here */
      for (size_t i = r->all.n; i-- > 0;)
        if (i < r->all.n && r->all.v[i]->state == ST_OPEN)
          relay_flush(r, r->all.v[i], &r->turn);
    for (size_t i = 0; i < r->dirty.n; i++) {
      client_t *c = r->dirty.v[i];
      if (c->state != ST_DEAD && c->dirty)
        relay_flush(r, c, NULL);
      c->dirty = false;
    }
    r->dirty.n = 0;
    r->turn.len = 0;
    relay_reap(r);
  }
  while (r->all.n)
    relay_kill(r, r->all.v[r->all.n - 1]);
  relay_reap(r);
  free(r->all.v);
  free(r->dirty.v);
  free(r->dead.v);
  rbuf_free(&r->turn);
  close(r->lfd);
  close(r->sigfd);
  close(r->epfd);
  free(r);
  return 0;
}
