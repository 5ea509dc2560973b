/*
 * wsload.c — a chat load generator (Linux, epoll, one thread): WebSocket,
 * Server-Sent Events, long polling and polling.
 *
 * Opens C client connections to a chat server that relays every message it
 * gets to all of its clients (wshub, the lecture's Node.js chat, or any
 * other), lets S of them send messages at an aggregate rate or as fast as a
 * window of unanswered messages allows, and measures deliveries and delivery
 * latency from a marker inside each message:
 *
 *   wsl:<run id, 8 hex>:<sender index>:<seq>:<send time, CLOCK_MONOTONIC ns>
 *
 * Whatever the server wraps around the text (JSON, "me: " prefixes), the
 * first marker found in a received message is the one counted. Other
 * modes hold connections idle (memory measurement) or only measure the
 * opening handshake rate. At the end it prints exactly one line that starts
 * with "RESULT " (key=value pairs; see tests/load/README.md) on stdout;
 * progress goes to stderr.
 *
 * The WebSocket client is its own: opening handshake (random key, 101 and
 * Sec-WebSocket-Accept checked with OpenSSL's SHA-1 and base64), masked
 * client frames, unmasked server frames with 7/16/64-bit lengths,
 * fragmented messages reassembled, pings answered, close handshake.
 * With --deflate it offers permessage-deflate (RFC 7692) as Chromium does
 * ("permessage-deflate; client_no_context_takeover; client_max_window_bits"),
 * insists that the 101 accepts it (a 101 without it is a handshake error),
 * inflates every message that comes with RSV1 (zlib, raw DEFLATE plus the
 * 00 00 ff ff tail) before looking for the marker, and compresses each
 * message it sends on its own when it is at least --deflate-threshold bytes
 * and compression makes it smaller.
 *
 * --transport sse|longpoll|poll speaks wshub's HTTP transports instead
 * (docs/PROTOCOL.md, "HTTP transports"), with an HTTP/1.1 client of its
 * own: each of the C receivers is a session — one GET /events stream
 * parsed event by event, or a keep-alive connection looping GET /poll
 * (held up to --poll-wait s, or every --poll-interval ms with wait=0) — and
 * each sender s has one more keep-alive connection that pipelines
 * POST /messages with receiver s's session, so its own messages come back
 * on receiver s. Responses need a Content-Length (wshub always sends one);
 * poll bodies are scanned, not parsed: the top level's "last_id" and the
 * objects of its "messages" array. A request connection the server closed
 * while idle (keep-alive timeout) is opened again; a poll lost that way is
 * sent again (it is idempotent), a POST is not.
 *
 * Ownership: everything lives in one wsl_ctx_t created in main(): the
 * connection array (receivers 0..C-1, then the senders' POST connections),
 * each connection's heap buffers (in: bytes not yet parsed; msg: a
 * fragmented message or a multi-line event being assembled; out: bytes the
 * kernel did not take yet), the poll timer heap and the shared read and
 * frame scratch buffers. Each buffer is owned by its connection and freed
 * when it closes or at exit. No globals. Deflate: the context owns one
 * inflater shared by every connection whose server compresses each message
 * on its own (server_no_context_takeover; reset per message), one deflater
 * per client window size (reset per message: wsload never keeps context),
 * and the inflate and deflate output scratch buffers; a connection whose
 * server keeps its context owns an inflater of its own (made on its first
 * compressed message, freed when it closes).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#define WSL_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WSL_RBUF_SIZE (256 * 1024)
#define WSL_MAX_HEAD 16384
#define WSL_MAX_MESSAGE (64u * 1024 * 1024)
#define WSL_NS 1000000000ull
#define WSL_CLOSE_WAIT_NS (2 * WSL_NS)
#define WSL_SIGNAL_TAG UINT32_MAX
/* Per-(receiver, sender) duplicate tracking is kept up to this many
 * entries (4 bytes each); beyond it duplicates are reported as -1. */
#define WSL_MAX_SEQ_TRACK (64u * 1024 * 1024)

/* Latency histogram: microseconds, exact below 128 us, then 64 linear
 * sub-buckets per power of two (under 1.6% error), up to 2^37 us. */
#define WSL_HIST_SUB 64
#define WSL_HIST_BUCKETS (128 + 31 * WSL_HIST_SUB)

/* permessage-deflate state of a connection (wsl_conn_t.pmd). */
#define WSL_PMD_ON 0x1         /* negotiated: RSV1 marks compressed messages */
#define WSL_PMD_SERVER_CTX 0x2 /* the server keeps its context: c->zin */
/* Inflate cache: compressed messages up to this size, and what they
 * inflate to, kept by a hash of their bytes (direct-mapped). */
#define WSL_ICACHE_MAX_IN 4096
/* What the offer says: Chromium's, with client_no_context_takeover. */
#define WSL_PMD_OFFER                                                          \
  "permessage-deflate; client_no_context_takeover; client_max_window_bits"

enum { WSL_FMT_RAW, WSL_FMT_CHAT_JSON, WSL_FMT_LECTURE2 };

enum { WSL_TR_WS, WSL_TR_SSE, WSL_TR_LONGPOLL, WSL_TR_POLL };

/* What a connection is: a WebSocket client, an event stream, a polling
 * receiver, or a sender's POST connection. */
enum { WSL_K_WS, WSL_K_SSE, WSL_K_POLL, WSL_K_POST };

/* HTTP input: response heads (with Content-Length bodies), or, after an
 * event stream's head, events until the connection ends. */
enum { WSL_HP_HEAD, WSL_HP_STREAM };

#define WSL_TOKEN_LEN 32
/* Consecutive reconnects of a poll connection without an answer between. */
#define WSL_MAX_RETRIES 3

enum {
  WSL_ST_IDLE,       /* not started */
  WSL_ST_CONNECTING, /* connect() in progress */
  WSL_ST_HANDSHAKE,  /* request sent, waiting for the 101 */
  WSL_ST_OPEN,       /* WebSocket open */
  WSL_ST_CLOSING,    /* our close frame sent, waiting for the server's */
  WSL_ST_DONE,       /* socket closed */
};

enum { WSL_PH_CONNECT, WSL_PH_HOLD, WSL_PH_SEND, WSL_PH_DRAIN, WSL_PH_CLOSE };

typedef struct wsl_buf {
  char *data;
  size_t len;
  size_t cap;
} wsl_buf_t;

/* One inflate-cache slot: compressed bytes z (z.len 0: empty) and their
 * inflated form. */
typedef struct wsl_icache {
  uint64_t hash;
  wsl_buf_t z;
  wsl_buf_t out;
} wsl_icache_t;

typedef struct wsl_hist {
  uint64_t counts[WSL_HIST_BUCKETS];
  uint64_t total;
  uint64_t max_ns;
  long double sum_ns;
} wsl_hist_t;

typedef struct wsl_conn {
  int fd;
  uint32_t index;
  uint8_t state;
  uint8_t kind;      /* WSL_K_* */
  uint8_t hphase;    /* HTTP kinds: WSL_HP_* */
  uint8_t retries;   /* poll: reconnects since the last answer */
  bool in_msg;       /* a fragmented message is being reassembled */
  bool want_out;     /* EPOLLOUT armed */
  bool failed;       /* counted as an error already */
  bool reconnecting; /* HTTP: a new socket is connecting, state unchanged */
  bool dropped;      /* HTTP: the server closed it idle; reopened on write */
  bool msg_rsv1;     /* the message being reassembled is compressed */
  uint8_t msg_opcode;
  uint8_t pmd;       /* WSL_PMD_* flags, 0 if deflate was not negotiated */
  uint8_t pmd_bits;  /* our window when compressing: client_max_window_bits */
  uint32_t msg_wire; /* frame bytes of the message being reassembled */
  uint32_t pending;  /* HTTP: requests sent, not answered yet */
  uint32_t heap_pos; /* poll: 1 + place in the poll heap, 0 if not in it */
  uint64_t after;    /* poll: the newest message id seen (the next after) */
  uint64_t t_next;   /* poll: when the next poll is due (ns) */
  uint64_t t_state;  /* when the current state began (ns) */
  uint64_t t_start;  /* when connect() was called (ns) */
  wsl_buf_t in;
  wsl_buf_t msg;
  wsl_buf_t out;
  z_stream *zin; /* the server's context, when it keeps one (or NULL) */
  union {
    char key[25]; /* WebSocket: Sec-WebSocket-Key while in HANDSHAKE */
    char token[WSL_TOKEN_LEN + 1]; /* HTTP receivers: the session */
  };
} wsl_conn_t;

typedef struct wsl_sender {
  uint64_t seq;      /* last sequence number sent */
  uint32_t inflight; /* sent, not yet received back by this sender */
  uint64_t next_ns;  /* next scheduled send (rate mode) */
  /* Polling with a window: the ids (from the POSTs' 202s) of messages its
   * receiver has not polled past yet, oldest first; a ring of `window`
   * entries in ctx->ids. */
  uint32_t ids_head;
  uint32_t ids_len;
} wsl_sender_t;

typedef struct wsl_opts {
  char host[256];
  char port[8];
  char path[1024];
  char query[1024];  /* the URL's query, without '?' (HTTP transports) */
  char hosthdr[300]; /* Host header value: host (bracketed if IPv6):port */
  int transport;
  bool url_http; /* http:// (HTTP transports only) */
  uint32_t poll_interval_ms;
  uint32_t poll_wait;
  bool format_set;
  uint32_t connections;
  uint32_t senders;
  double rate;
  uint32_t window;
  bool window_set;
  double duration;
  double warmup;
  uint64_t messages;
  uint32_t source_ips;
  double connect_rate;
  uint32_t concurrency;
  double hold;
  bool hold_set;
  bool handshake_only;
  uint32_t payload;
  int format;
  double drain;
  double timeout;
  double connect_timeout;
  bool quiet;
  bool deflate;               /* offer and require permessage-deflate */
  uint32_t deflate_threshold; /* compress messages of at least this size */
  uint32_t deflate_level;     /* zlib level, 1..9 */
  uint32_t deflate_cache;     /* inflate-cache slots, 0 = none */
  uint16_t ports[16];         /* --ports: connection i goes to ports[i % n] */
  uint32_t nports;
} wsl_opts_t;

typedef struct wsl_ctx {
  wsl_opts_t opt;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  int epfd;
  int sigfd;
  wsl_conn_t *conns;
  uint32_t nconns; /* receivers, then (HTTP) one POST connection a sender */
  uint32_t *heap;  /* poll receivers by t_next (a binary min-heap) */
  uint32_t heap_len;
  wsl_sender_t *senders;
  uint32_t *last_seq; /* [receiver * senders + sender], or NULL */
  uint64_t *ids;      /* [sender * window]: see wsl_sender_t, or NULL */
  char *rbuf;
  char *fbuf; /* outgoing frame scratch */
  size_t fbuf_cap;
  char *text; /* outgoing message scratch */
  size_t text_cap;
  z_stream *zinf;       /* shared inflater (window 15), reset per message */
  z_stream *zdef[8];    /* deflaters by window bits - 8 (8 uses 9), or NULL */
  wsl_buf_t ibuf;       /* inflated message scratch */
  wsl_buf_t zbuf;       /* compressed message scratch */
  wsl_icache_t *icache; /* opt.deflate_cache slots, or NULL */
  const char *inflated; /* the last message pmd_inflate made */
  size_t inflated_len;
  bool pmd_refused_said; /* the "not accepted" error was printed */
  char run_id[9];
  uint64_t rng;
  int phase;
  bool interrupted;
  /* counters */
  uint32_t started;
  uint32_t inflight; /* CONNECTING + HANDSHAKE (+ CLOSING in handshake mode) */
  uint32_t open;
  uint32_t connected; /* ever reached OPEN */
  uint32_t settled;   /* reached OPEN or failed */
  uint64_t connect_errors;
  uint64_t handshake_errors;
  uint64_t protocol_errors;
  uint64_t http_errors;
  uint64_t closed_unexpected;
  uint64_t sent;
  uint64_t expected;
  uint64_t delivered;
  uint64_t warmup_sent;
  int64_t duplicates;
  uint64_t missed;
  uint64_t receipts; /* markers of this run received, warmup included */
  uint64_t frames_in;
  uint64_t bytes_in;
  uint64_t bytes_out;
  uint64_t requests;
  uint64_t reconnects;
  /* WebSocket data messages (all of them, welcomes and warmup included) */
  uint64_t pmd_conns;          /* upgrades that negotiated permessage-deflate */
  uint64_t msgs_in_compressed; /* received with RSV1 */
  uint64_t msgs_in_plain;      /* received without */
  uint64_t inflates;           /* compressed messages run through zlib */
  uint64_t icache_hits;        /* compressed messages found in the cache */
  uint64_t msg_wire_in;        /* their frame bytes (headers + payload) */
  uint64_t msg_payload_in;     /* their payload bytes after inflating */
  uint64_t delivered_wire;     /* the same two for measured deliveries only */
  uint64_t delivered_payload;
  uint64_t msgs_out_compressed;
  uint64_t msgs_out_plain;
  uint64_t msg_wire_out;    /* frame bytes of the data messages sent */
  uint64_t msg_payload_out; /* their payload before compressing */
  /* times (ns, CLOCK_MONOTONIC) */
  uint64_t t_begin;
  uint64_t t_connected;
  uint64_t t_first_connect;
  uint64_t t_last_upgrade;
  uint64_t t_warm_start;
  uint64_t t_measure;
  uint64_t t_send_end;
  uint64_t t_last_delivery;
  uint64_t t_end;
  uint64_t t_progress;
  uint64_t t_sweep;
  wsl_hist_t lat;
  wsl_hist_t hs;
} wsl_ctx_t;

/* ---------------------------------------------------------------- utils */

static uint64_t wsl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * WSL_NS + (uint64_t)ts.tv_nsec;
}

static uint64_t wsl_secs_ns(double s) {
  return s <= 0 ? 0 : (uint64_t)(s * 1e9);
}

static uint64_t wsl_rand(wsl_ctx_t *ctx) {
  /* xorshift64*: mask keys need not be unpredictable for a load tool. */
  uint64_t x = ctx->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  ctx->rng = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static void wsl_die_oom(void) {
  fputs("wsload: out of memory\n", stderr);
  exit(1);
}

static void buf_reserve(wsl_buf_t *b, size_t need) {
  if (b->len + need <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + need)
    cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p)
    wsl_die_oom();
  b->data = p;
  b->cap = cap;
}

static void buf_append(wsl_buf_t *b, const void *data, size_t len) {
  buf_reserve(b, len);
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

static void buf_consume(wsl_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

static void buf_free(wsl_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ------------------------------------------------------------ histogram */

static size_t hist_index(uint64_t us) {
  if (us < 128)
    return (size_t)us;
  int msb = 63 - __builtin_clzll(us);
  if (msb > 37)
    return WSL_HIST_BUCKETS - 1;
  int shift = msb - 6;
  size_t sub = (size_t)(us >> shift) - WSL_HIST_SUB;
  return 128 + (size_t)(msb - 7) * WSL_HIST_SUB + sub;
}

/* The middle of bucket i, in microseconds. */
static double hist_value(size_t i) {
  if (i < 128)
    return (double)i + 0.5;
  size_t k = i - 128;
  int shift = (int)(k / WSL_HIST_SUB) + 1;
  uint64_t lo = (uint64_t)(k % WSL_HIST_SUB + WSL_HIST_SUB) << shift;
  return (double)lo + (double)(1ull << shift) / 2.0;
}

static void hist_add(wsl_hist_t *h, uint64_t ns) {
  h->counts[hist_index(ns / 1000)]++;
  h->total++;
  h->sum_ns += (long double)ns;
  if (ns > h->max_ns)
    h->max_ns = ns;
}

/* Percentile p (0..1) in milliseconds, never above the exact maximum. */
static double hist_pct_ms(const wsl_hist_t *h, double p) {
  if (h->total == 0)
    return 0;
  uint64_t rank = (uint64_t)(p * (double)h->total + 0.999999);
  if (rank < 1)
    rank = 1;
  uint64_t cum = 0;
  double v = 0;
  for (size_t i = 0; i < WSL_HIST_BUCKETS; i++) {
    cum += h->counts[i];
    if (cum >= rank) {
      v = hist_value(i) / 1000.0;
      break;
    }
  }
  double max = (double)h->max_ns / 1e6;
  return v > max ? max : v;
}

static double hist_mean_ms(const wsl_hist_t *h) {
  return h->total ? (double)(h->sum_ns / (long double)h->total) / 1e6 : 0;
}

/* ------------------------------------------------------------ poll heap */

/* Poll receivers waiting for their next poll, a binary min-heap on t_next;
 * each connection is in it at most once (heap_pos). No allocation: the
 * array holds every receiver. */
static void heap_set(wsl_ctx_t *ctx, uint32_t pos, uint32_t idx) {
  ctx->heap[pos] = idx;
  ctx->conns[idx].heap_pos = pos + 1;
}

static void heap_up(wsl_ctx_t *ctx, uint32_t pos) {
  uint32_t idx = ctx->heap[pos];
  uint64_t t = ctx->conns[idx].t_next;
  while (pos > 0) {
    uint32_t parent = (pos - 1) / 2;
    if (ctx->conns[ctx->heap[parent]].t_next <= t)
      break;
    heap_set(ctx, pos, ctx->heap[parent]);
    pos = parent;
  }
  heap_set(ctx, pos, idx);
}

static void heap_down(wsl_ctx_t *ctx, uint32_t pos) {
  uint32_t idx = ctx->heap[pos];
  uint64_t t = ctx->conns[idx].t_next;
  for (;;) {
    uint32_t l = 2 * pos + 1;
    if (l >= ctx->heap_len)
      break;
    uint32_t m = l;
    if (l + 1 < ctx->heap_len &&
        ctx->conns[ctx->heap[l + 1]].t_next < ctx->conns[ctx->heap[l]].t_next)
      m = l + 1;
    if (ctx->conns[ctx->heap[m]].t_next >= t)
      break;
    heap_set(ctx, pos, ctx->heap[m]);
    pos = m;
  }
  heap_set(ctx, pos, idx);
}

static void heap_remove(wsl_ctx_t *ctx, wsl_conn_t *c) {
  if (c->heap_pos == 0)
    return;
  uint32_t pos = c->heap_pos - 1;
  c->heap_pos = 0;
  uint32_t last = ctx->heap[--ctx->heap_len];
  if (pos == ctx->heap_len)
    return;
  heap_set(ctx, pos, last);
  heap_up(ctx, pos);
  heap_down(ctx, ctx->conns[last].heap_pos - 1);
}

/* (Re)schedules c's next poll at t. */
static void heap_schedule(wsl_ctx_t *ctx, wsl_conn_t *c, uint64_t t) {
  heap_remove(ctx, c);
  c->t_next = t;
  heap_set(ctx, ctx->heap_len++, c->index);
  heap_up(ctx, ctx->heap_len - 1);
}

/* -------------------------------------------------------------- deflate */

static void pmd_inflater_free(z_stream **zp) {
  if (!*zp)
    return;
  inflateEnd(*zp);
  free(*zp);
  *zp = NULL;
}

/* A raw inflater with a 2^15 window (enough for any window the server
 * may use). */
static z_stream *pmd_inflater_new(void) {
  z_stream *z = calloc(1, sizeof *z);
  if (!z || inflateInit2(z, -15) != Z_OK)
    wsl_die_oom();
  return z;
}

/* Inflates len bytes from in onto the end of out. Returns 1 if all input
 * was used, 2 if a final block ended the stream (*rest: input left after
 * it), 0 on invalid data or a message over WSL_MAX_MESSAGE. */
static int pmd_inflate_some(z_stream *z, const uint8_t *in, size_t len,
                            wsl_buf_t *out, size_t *rest) {
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)len;
  for (;;) {
    if (out->cap - out->len < 4096)
      buf_reserve(out, out->cap > 65536 ? out->cap : 65536);
    size_t room = out->cap - out->len;
    if (room > UINT32_MAX)
      room = UINT32_MAX;
    z->next_out = (Bytef *)out->data + out->len;
    z->avail_out = (uInt)room;
    int r = inflate(z, Z_SYNC_FLUSH);
    out->len += room - z->avail_out;
    if (out->len > WSL_MAX_MESSAGE)
      return 0;
    if (r == Z_STREAM_END) {
      *rest = z->avail_in;
      return 2;
    }
    if (r != Z_OK && r != Z_BUF_ERROR)
      return 0;
    if (z->avail_in == 0 && z->avail_out > 0)
      return 1;
    if (r == Z_BUF_ERROR && z->avail_out > 0)
      return 0; /* no progress with input and room left: cannot happen */
  }
}

static uint64_t pmd_hash(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
  return h;
}

/* Inflates one compressed message (all its frames' payloads): the payload,
 * then the 00 00 ff ff that the sender removed; sets ctx->inflated and
 * ctx->inflated_len (valid until the next call). The shared inflater is
 * reset first when the server compresses each message on its own; a
 * server that keeps its context gets c->zin. A final block is allowed if
 * nothing but the tail follows it (the context starts anew after it).
 * Returns false on invalid data.
 *
 * A message compressed on its own always inflates to the same bytes, and a
 * server like wshub sends the same compressed frame to every receiver: so
 * such messages (up to WSL_ICACHE_MAX_IN bytes) are looked up first in a
 * cache of the compressed bytes (compared whole) and their output, so that
 * the client is not the limit of a compressed run. */
static bool pmd_inflate(wsl_ctx_t *ctx, wsl_conn_t *c, const char *in,
                        size_t len) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  wsl_icache_t *slot = NULL;
  uint64_t hash = 0;
  if (ctx->icache && !(c->pmd & WSL_PMD_SERVER_CTX) &&
      len <= WSL_ICACHE_MAX_IN) {
    hash = pmd_hash(in, len);
    slot = &ctx->icache[hash % ctx->opt.deflate_cache];
    if (slot->z.len == len && slot->hash == hash &&
        memcmp(slot->z.data, in, len) == 0) {
      ctx->icache_hits++;
      ctx->inflated = slot->out.data;
      ctx->inflated_len = slot->out.len;
      return true;
    }
  }
  ctx->inflates++;
  z_stream *z;
  if (c->pmd & WSL_PMD_SERVER_CTX) {
    if (!c->zin)
      c->zin = pmd_inflater_new();
    z = c->zin;
  } else {
    if (!ctx->zinf)
      ctx->zinf = pmd_inflater_new();
    z = ctx->zinf;
    inflateReset(z);
  }
  ctx->ibuf.len = 0;
  size_t rest = 0;
  int r = pmd_inflate_some(z, (const uint8_t *)in, len, &ctx->ibuf, &rest);
  if (r == 1)
    r = pmd_inflate_some(z, tail, sizeof tail, &ctx->ibuf, &rest);
  else if (r == 2 && rest > 0)
    r = 0; /* data after the final block */
  if (r == 2)
    inflateReset(z);
  if (r == 0)
    return false;
  ctx->inflated = ctx->ibuf.data;
  ctx->inflated_len = ctx->ibuf.len;
  if (slot && ctx->ibuf.len <= 4 * WSL_ICACHE_MAX_IN) {
    slot->hash = hash;
    slot->z.len = 0;
    buf_append(&slot->z, in, len);
    slot->out.len = 0;
    buf_append(&slot->out, ctx->ibuf.data, ctx->ibuf.len);
  }
  return true;
}

/* Compresses text (len bytes) on its own, for a connection whose window is
 * 2^bits, into ctx->zbuf without the trailing 00 00 ff ff. Returns false
 * (send it plain) if it is below the threshold or does not get smaller.
 * zlib has no raw 256-byte window: with bits 8 only messages of at most
 * 256 bytes, whose distances cannot exceed that, are compressed (with 9). */
static bool pmd_compress(wsl_ctx_t *ctx, const char *text, size_t len,
                         unsigned bits) {
  if (len < ctx->opt.deflate_threshold || len == 0)
    return false;
  if (bits == 8 && len > 256)
    return false;
  unsigned wb = bits < 9 ? 9 : bits;
  z_stream **zp = &ctx->zdef[wb - 8];
  if (!*zp) {
    *zp = calloc(1, sizeof **zp);
    if (!*zp || deflateInit2(*zp, (int)ctx->opt.deflate_level, Z_DEFLATED,
                             -(int)wb, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      wsl_die_oom();
  } else {
    deflateReset(*zp);
  }
  z_stream *z = *zp;
  size_t bound = deflateBound(z, (uLong)len) + 16;
  ctx->zbuf.len = 0;
  buf_reserve(&ctx->zbuf, bound);
  z->next_in = (Bytef *)text;
  z->avail_in = (uInt)len;
  z->next_out = (Bytef *)ctx->zbuf.data;
  z->avail_out = (uInt)bound;
  int r = deflate(z, Z_SYNC_FLUSH);
  size_t n = bound - z->avail_out;
  if (r != Z_OK || z->avail_in != 0 || z->avail_out == 0 || n < 4 ||
      memcmp(ctx->zbuf.data + n - 4, "\x00\x00\xff\xff", 4) != 0) {
    fputs("wsload: deflate failed\n", stderr);
    exit(1);
  }
  n -= 4;
  if (n >= len)
    return false;
  ctx->zbuf.len = n;
  return true;
}

/* ------------------------------------------------------------- sockets */

static void conn_set_events(wsl_ctx_t *ctx, wsl_conn_t *c, bool add) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.data.u32 = c->index;
  if (c->state == WSL_ST_CONNECTING || c->reconnecting)
    ev.events = EPOLLOUT;
  else
    ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
  epoll_ctl(ctx->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_set_state(wsl_ctx_t *ctx, wsl_conn_t *c, uint8_t st) {
  bool was_flight = c->state == WSL_ST_CONNECTING ||
                    c->state == WSL_ST_HANDSHAKE ||
                    (ctx->opt.handshake_only && c->state == WSL_ST_CLOSING);
  bool is_flight = st == WSL_ST_CONNECTING || st == WSL_ST_HANDSHAKE ||
                   (ctx->opt.handshake_only && st == WSL_ST_CLOSING);
  if (was_flight && !is_flight)
    ctx->inflight--;
  else if (!was_flight && is_flight)
    ctx->inflight++;
  /* `open` counts receivers: a sender's POST connection receives nothing. */
  bool receiver = c->kind != WSL_K_POST;
  if (receiver && c->state == WSL_ST_OPEN && st != WSL_ST_OPEN)
    ctx->open--;
  else if (receiver && c->state != WSL_ST_OPEN && st == WSL_ST_OPEN)
    ctx->open++;
  c->state = st;
  c->t_state = wsl_now();
}

/* Closes the socket and frees the connection's buffers. */
static void conn_finish(wsl_ctx_t *ctx, wsl_conn_t *c) {
  if (c->state == WSL_ST_DONE || c->state == WSL_ST_IDLE)
    return;
  if (c->state == WSL_ST_CONNECTING || c->state == WSL_ST_HANDSHAKE)
    ctx->settled++;
  if (c->fd >= 0) {
    epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
  buf_free(&c->in);
  buf_free(&c->msg);
  buf_free(&c->out);
  pmd_inflater_free(&c->zin);
  c->in_msg = false;
  c->want_out = false;
  c->reconnecting = false;
  c->dropped = false;
  c->pending = 0;
  heap_remove(ctx, c);
  conn_set_state(ctx, c, WSL_ST_DONE);
}

/* A connection ended by an error; `counter` says which kind. An open
 * connection that dies outside the close phase is counted as closed. */
static void conn_fail(wsl_ctx_t *ctx, wsl_conn_t *c, uint64_t *counter) {
  if (!c->failed) {
    if (counter)
      (*counter)++;
    else if (c->state == WSL_ST_OPEN && ctx->phase != WSL_PH_CLOSE)
      ctx->closed_unexpected++;
    if (counter || c->state == WSL_ST_OPEN)
      c->failed = true;
  }
  conn_finish(ctx, c);
}

static void conn_flush(wsl_ctx_t *ctx, wsl_conn_t *c) {
  if (c->reconnecting)
    return;
  while (c->out.len > 0) {
    ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
    if (n > 0) {
      ctx->bytes_out += (uint64_t)n;
      buf_consume(&c->out, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    conn_fail(ctx, c, NULL);
    return;
  }
  bool want = c->out.len > 0;
  if (want != c->want_out) {
    c->want_out = want;
    conn_set_events(ctx, c, false);
  }
}

/* Sends bytes in order after anything already queued. */
static void conn_reconnect(wsl_ctx_t *ctx, wsl_conn_t *c);

static void conn_write(wsl_ctx_t *ctx, wsl_conn_t *c, const void *data,
                       size_t len) {
  if (c->fd < 0 && c->dropped)
    conn_reconnect(ctx, c);
  if (c->fd < 0)
    return;
  if (c->out.len == 0 && !c->reconnecting) {
    ssize_t n;
    do
      n = send(c->fd, data, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      conn_fail(ctx, c, NULL);
      return;
    }
    if (n < 0)
      n = 0;
    ctx->bytes_out += (uint64_t)n;
    data = (const char *)data + n;
    len -= (size_t)n;
    if (len == 0)
      return;
  }
  buf_append(&c->out, data, len);
  if (!c->want_out && !c->reconnecting) {
    c->want_out = true;
    conn_set_events(ctx, c, false);
  }
}

/* Builds one masked client frame whose first byte is b0 in ctx->fbuf and
 * writes it. Returns the frame's size. */
static size_t conn_send_raw(wsl_ctx_t *ctx, wsl_conn_t *c, uint8_t b0,
                            const char *payload, size_t len) {
  size_t need = len + 14;
  if (need > ctx->fbuf_cap) {
    char *p = realloc(ctx->fbuf, need);
    if (!p)
      wsl_die_oom();
    ctx->fbuf = p;
    ctx->fbuf_cap = need;
  }
  uint8_t *f = (uint8_t *)ctx->fbuf;
  size_t h = 0;
  f[h++] = b0;
  if (len < 126) {
    f[h++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    f[h++] = 0x80 | 126;
    f[h++] = (uint8_t)(len >> 8);
    f[h++] = (uint8_t)len;
  } else {
    f[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      f[h++] = (uint8_t)((uint64_t)len >> (i * 8));
  }
  uint32_t m = (uint32_t)wsl_rand(ctx);
  uint8_t mask[4] = {(uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16),
                     (uint8_t)(m >> 24)};
  memcpy(f + h, mask, 4);
  h += 4;
  for (size_t i = 0; i < len; i++)
    f[h + i] = (uint8_t)payload[i] ^ mask[i & 3];
  conn_write(ctx, c, f, h + len);
  return h + len;
}

/* One masked, unfragmented, uncompressed frame. */
static void conn_send_frame(wsl_ctx_t *ctx, wsl_conn_t *c, uint8_t opcode,
                            const char *payload, size_t len) {
  conn_send_raw(ctx, c, (uint8_t)(0x80 | opcode), payload, len);
}

/* A data message: compressed (RSV1) when deflate was negotiated and
 * pmd_compress says so, else plain. */
static void conn_send_message(wsl_ctx_t *ctx, wsl_conn_t *c, uint8_t opcode,
                              const char *payload, size_t len) {
  ctx->msg_payload_out += len;
  if ((c->pmd & WSL_PMD_ON) && pmd_compress(ctx, payload, len, c->pmd_bits)) {
    ctx->msgs_out_compressed++;
    ctx->msg_wire_out += conn_send_raw(ctx, c, (uint8_t)(0xC0 | opcode),
                                       ctx->zbuf.data, ctx->zbuf.len);
    return;
  }
  ctx->msgs_out_plain++;
  ctx->msg_wire_out +=
      conn_send_raw(ctx, c, (uint8_t)(0x80 | opcode), payload, len);
}

/* Starts our side of the close handshake (code 1000); an HTTP connection
 * is simply closed. */
static void conn_close(wsl_ctx_t *ctx, wsl_conn_t *c) {
  if (c->kind != WSL_K_WS) {
    conn_finish(ctx, c);
    return;
  }
  if (c->state != WSL_ST_OPEN)
    return;
  const char code[2] = {(char)0x03, (char)0xe8};
  conn_send_frame(ctx, c, 0x8, code, 2);
  if (c->state == WSL_ST_OPEN)
    conn_set_state(ctx, c, WSL_ST_CLOSING);
}

/* ------------------------------------------------------------ handshake */

static void ws_accept_for(const char *key, char out[29]) {
  char in[64];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  int n = snprintf(in, sizeof in, "%s%s", key, WSL_GUID);
  EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static void conn_send_request(wsl_ctx_t *ctx, wsl_conn_t *c) {
  unsigned char raw[16];
  for (int i = 0; i < 16; i += 8) {
    uint64_t r = wsl_rand(ctx);
    memcpy(raw + i, &r, 8);
  }
  EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
  char req[2048];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "%s"
                   "User-Agent: wsload\r\n\r\n",
                   ctx->opt.path, ctx->opt.hosthdr, c->key,
                   ctx->opt.deflate ? "Sec-WebSocket-Extensions: " WSL_PMD_OFFER
                                      "\r\n"
                                    : "");
  conn_set_state(ctx, c, WSL_ST_HANDSHAKE);
  c->want_out = false;
  conn_set_events(ctx, c, false);
  conn_write(ctx, c, req, (size_t)n);
}

static bool head_name_is(const char *p, size_t n, const char *name) {
  size_t nl = strlen(name);
  return n == nl && strncasecmp(p, name, nl) == 0;
}

static bool ext_tchar(char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
         (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static const char *ext_ows(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  return p;
}

/* A window-bits value as RFC 7692 writes it: 8..15, no leading zero. */
static int ext_bits(const char *v, size_t n) {
  if (n == 1 && (v[0] == '8' || v[0] == '9'))
    return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
    return 10 + (v[1] - '0');
  return -1;
}

/* Checks the 101's Sec-WebSocket-Extensions (all of its lines joined with
 * ","), RFC 6455 §9.1's grammar, against our offer: exactly one
 * permessage-deflate with server_no_context_takeover,
 * client_no_context_takeover, server_max_window_bits=8..15 and
 * client_max_window_bits=8..15 (a value is required in a response), each
 * at most once, values as tokens or quoted strings; nothing else. Sets
 * c->pmd and c->pmd_bits. */
static bool ext_accept(wsl_conn_t *c, const char *p, const char *end) {
  unsigned n_pmd = 0;
  bool seen[4] = {false, false, false, false};
  static const char *const names[4] = {
      "server_no_context_takeover", "client_no_context_takeover",
      "server_max_window_bits", "client_max_window_bits"};
  c->pmd = 0;
  c->pmd_bits = 15;
  for (;;) {
    p = ext_ows(p, end);
    if (p < end && *p == ',') { /* empty list elements are allowed */
      p++;
      continue;
    }
    if (p >= end)
      break;
    const char *name = p;
    while (p < end && ext_tchar(*p))
      p++;
    if (p == name)
      return false;
    if ((size_t)(p - name) != 18 || strncasecmp(name, "permessage-deflate", 18))
      return false; /* we offered nothing else */
    n_pmd++;
    c->pmd = WSL_PMD_ON | WSL_PMD_SERVER_CTX;
    for (;;) {
      p = ext_ows(p, end);
      if (p >= end || *p == ',')
        break;
      if (*p != ';')
        return false;
      p = ext_ows(p + 1, end);
      const char *pn = p;
      while (p < end && ext_tchar(*p))
        p++;
      size_t pnl = (size_t)(p - pn);
      if (pnl == 0)
        return false;
      p = ext_ows(p, end);
      char val[16];
      size_t vl = 0;
      bool has_val = false;
      if (p < end && *p == '=') {
        has_val = true;
        p = ext_ows(p + 1, end);
        if (p < end && *p == '"') {
          for (p++;; p++) {
            if (p >= end)
              return false;
            if (*p == '"')
              break;
            if (*p == '\\' && ++p >= end)
              return false;
            if (vl < sizeof val)
              val[vl] = *p;
            vl++;
          }
          p++;
        } else {
          const char *v = p;
          while (p < end && ext_tchar(*p))
            p++;
          vl = (size_t)(p - v);
          if (vl == 0)
            return false;
          memcpy(val, v, vl < sizeof val ? vl : sizeof val);
        }
      }
      int k = -1;
      for (int i = 0; i < 4; i++)
        if (strlen(names[i]) == pnl && strncasecmp(pn, names[i], pnl) == 0)
          k = i;
      if (k < 0 || seen[k])
        return false;
      seen[k] = true;
      int bits = has_val && vl <= 2 ? ext_bits(val, vl) : -1;
      if (k < 2 ? has_val : bits < 0)
        return false;
      if (k == 0)
        c->pmd &= (uint8_t)~WSL_PMD_SERVER_CTX;
      else if (k == 3)
        c->pmd_bits = (uint8_t)bits;
    }
  }
  return n_pmd == 1;
}

enum { WSL_HS_OK, WSL_HS_BAD, WSL_HS_NO_PMD };

/* Checks the response head (without the final CRLF CRLF): a 101 with the
 * right Sec-WebSocket-Accept, and extensions that answer what we offered
 * (none without --deflate; with it, permessage-deflate must be accepted:
 * WSL_HS_NO_PMD if the 101 has no Sec-WebSocket-Extensions). */
static int handshake_check(const wsl_ctx_t *ctx, wsl_conn_t *c,
                           const char *head, size_t len) {
  if (len < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0)
    return WSL_HS_BAD;
  char want[29];
  ws_accept_for(c->key, want);
  bool accept_ok = false;
  char ext[1024];
  size_t ext_len = 0;
  bool have_ext = false;
  const char *p = head;
  const char *end = head + len;
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!eol)
      eol = end;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon) {
      const char *v = ext_ows(colon + 1, eol);
      const char *ve = eol;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      size_t nl = (size_t)(colon - p), vl = (size_t)(ve - v);
      if (head_name_is(p, nl, "sec-websocket-accept")) {
        accept_ok = vl == strlen(want) && memcmp(v, want, vl) == 0;
      } else if (head_name_is(p, nl, "sec-websocket-extensions")) {
        if (ext_len + vl + 1 >= sizeof ext)
          return WSL_HS_BAD;
        if (have_ext)
          ext[ext_len++] = ',';
        memcpy(ext + ext_len, v, vl);
        ext_len += vl;
        have_ext = true;
      }
    }
    p = eol + 2;
  }
  if (!accept_ok)
    return WSL_HS_BAD;
  c->pmd = 0;
  if (!ctx->opt.deflate)
    return have_ext ? WSL_HS_BAD : WSL_HS_OK;
  if (!have_ext)
    return WSL_HS_NO_PMD;
  return ext_accept(c, ext, ext + ext_len) ? WSL_HS_OK : WSL_HS_BAD;
}

static void conn_on_upgrade(wsl_ctx_t *ctx, wsl_conn_t *c) {
  uint64_t now = wsl_now();
  hist_add(&ctx->hs, now - c->t_start);
  ctx->connected++;
  ctx->settled++;
  ctx->t_last_upgrade = now;
  conn_set_state(ctx, c, WSL_ST_OPEN);
  if (ctx->opt.handshake_only)
    conn_close(ctx, c);
}

/* -------------------------------------------------------------- messages */

static bool parse_u64(const char **pp, const char *end, uint64_t *out) {
  const char *p = *pp;
  uint64_t v = 0;
  if (p >= end || *p < '0' || *p > '9')
    return false;
  while (p < end && *p >= '0' && *p <= '9') {
    v = v * 10 + (uint64_t)(*p - '0');
    p++;
  }
  *pp = p;
  *out = v;
  return true;
}

/* Finds the first marker of this run in a text message and counts it.
 * Returns true if it counted a measured delivery. */
static bool msg_on_text(wsl_ctx_t *ctx, wsl_conn_t *c, const char *data,
                        size_t len) {
  const char *p = data;
  const char *end = data + len;
  while (p < end) {
    const char *m = memchr(p, 'w', (size_t)(end - p));
    if (!m)
      return false;
    if ((size_t)(end - m) < 4 || memcmp(m, "wsl:", 4) != 0) {
      p = m + 1;
      continue;
    }
    p = m + 4;
    if ((size_t)(end - p) < 9 || memcmp(p, ctx->run_id, 8) != 0 || p[8] != ':')
      continue;
    p += 9;
    uint64_t s, seq, ns;
    if (!parse_u64(&p, end, &s) || p >= end || *p++ != ':' ||
        !parse_u64(&p, end, &seq) || p >= end || *p++ != ':' ||
        !parse_u64(&p, end, &ns) || s >= ctx->opt.senders)
      continue;
    uint64_t now = wsl_now();
    ctx->receipts++;
    if (ctx->last_seq) {
      uint32_t *last =
          &ctx->last_seq[(uint64_t)c->index * ctx->opt.senders + s];
      if (seq <= *last)
        ctx->duplicates++;
      else
        *last = (uint32_t)seq;
    }
    /* Polling with a window counts by id instead (ids_release). */
    if (s == c->index && ctx->senders[s].inflight > 0 && !ctx->ids)
      ctx->senders[s].inflight--;
    if (ns >= ctx->t_measure && ns < ctx->t_send_end) {
      ctx->delivered++;
      hist_add(&ctx->lat, now > ns ? now - ns : 0);
      ctx->t_last_delivery = now;
      return true;
    }
    return false;
  }
  return false;
}

/* A whole WebSocket data message: wire is its frames' bytes, rsv1 says it
 * is compressed. Returns false if c was closed (invalid compressed data). */
static bool ws_on_message(wsl_ctx_t *ctx, wsl_conn_t *c, uint8_t op, bool rsv1,
                          const char *data, size_t len, size_t wire) {
  if (rsv1) {
    if (!pmd_inflate(ctx, c, data, len)) {
      conn_fail(ctx, c, &ctx->protocol_errors);
      return false;
    }
    data = ctx->inflated;
    len = ctx->inflated_len;
    ctx->msgs_in_compressed++;
  } else {
    ctx->msgs_in_plain++;
  }
  ctx->msg_wire_in += wire;
  ctx->msg_payload_in += len;
  if (op == 0x1 && msg_on_text(ctx, c, data, len)) {
    ctx->delivered_wire += wire;
    ctx->delivered_payload += len;
  }
  return true;
}

/* One complete frame from the server (wire: its size with the header).
 * RSV1 is allowed only on the first frame of a data message, and only when
 * permessage-deflate was negotiated. Returns false if c was closed. */
static bool conn_on_frame(wsl_ctx_t *ctx, wsl_conn_t *c, uint8_t b0,
                          const char *pl, size_t len, size_t wire) {
  bool fin = b0 & 0x80;
  bool rsv1 = b0 & 0x40;
  uint8_t op = b0 & 0x0f;
  ctx->frames_in++;
  if ((b0 & 0x30) ||
      (rsv1 && (!(c->pmd & WSL_PMD_ON) || (op != 0x1 && op != 0x2)))) {
    conn_fail(ctx, c, &ctx->protocol_errors);
    return false;
  }
  if (op >= 0x8) {
    if (!fin || len > 125) {
      conn_fail(ctx, c, &ctx->protocol_errors);
      return false;
    }
    if (op == 0x8) {
      if (c->state == WSL_ST_OPEN) {
        /* The server started closing: echo its code, then close. */
        conn_send_frame(ctx, c, 0x8, pl, len >= 2 ? 2 : 0);
        conn_fail(ctx, c, NULL);
      } else {
        conn_finish(ctx, c);
      }
      return false;
    }
    if (op == 0x9 && c->state == WSL_ST_OPEN)
      conn_send_frame(ctx, c, 0xA, pl, len);
    else if (op != 0x9 && op != 0xA) {
      conn_fail(ctx, c, &ctx->protocol_errors);
      return false;
    }
    return c->state != WSL_ST_DONE;
  }
  if (op == 0x0) {
    if (!c->in_msg || c->msg.len + len > WSL_MAX_MESSAGE) {
      conn_fail(ctx, c, &ctx->protocol_errors);
      return false;
    }
    buf_append(&c->msg, pl, len);
    c->msg_wire += (uint32_t)wire;
    if (fin) {
      c->in_msg = false;
      bool ok = ws_on_message(ctx, c, c->msg_opcode, c->msg_rsv1, c->msg.data,
                              c->msg.len, c->msg_wire);
      if (ok)
        c->msg.len = 0;
      return ok;
    }
    return true;
  }
  if ((op != 0x1 && op != 0x2) || c->in_msg) {
    conn_fail(ctx, c, &ctx->protocol_errors);
    return false;
  }
  if (fin)
    return ws_on_message(ctx, c, op, rsv1, pl, len, wire);
  c->in_msg = true;
  c->msg_opcode = op;
  c->msg_rsv1 = rsv1;
  c->msg_wire = (uint32_t)wire;
  c->msg.len = 0;
  buf_append(&c->msg, pl, len);
  return true;
}

/* Parses as much of data as forms complete units (the response head, then
 * frames). Returns the bytes consumed, or SIZE_MAX if c was closed. */
static size_t conn_parse(wsl_ctx_t *ctx, wsl_conn_t *c, const char *data,
                         size_t len) {
  size_t off = 0;
  if (c->state == WSL_ST_HANDSHAKE) {
    const char *e = memmem(data, len, "\r\n\r\n", 4);
    if (!e) {
      if (len > WSL_MAX_HEAD) {
        conn_fail(ctx, c, &ctx->handshake_errors);
        return SIZE_MAX;
      }
      return 0;
    }
    int hs = handshake_check(ctx, c, data, (size_t)(e - data));
    if (hs != WSL_HS_OK) {
      if (ctx->opt.deflate && !ctx->pmd_refused_said) {
        /* Loud, once, even with --quiet: the run measures no deflate. */
        ctx->pmd_refused_said = true;
        fprintf(stderr,
                "wsload: --deflate: %s (each such 101 is a handshake "
                "error)\n",
                hs == WSL_HS_NO_PMD
                    ? "the server did not accept permessage-deflate (no "
                      "Sec-WebSocket-Extensions in its 101)"
                    : "a 101 that is invalid or accepts permessage-deflate "
                      "with parameters we did not offer");
      }
      conn_fail(ctx, c, &ctx->handshake_errors);
      return SIZE_MAX;
    }
    if (c->pmd & WSL_PMD_ON)
      ctx->pmd_conns++;
    off = (size_t)(e - data) + 4;
    conn_on_upgrade(ctx, c);
    if (c->state == WSL_ST_DONE)
      return SIZE_MAX;
  }
  while (len - off >= 2) {
    const uint8_t *f = (const uint8_t *)data + off;
    uint8_t b0 = f[0];
    uint8_t b1 = f[1];
    uint64_t plen = b1 & 0x7f;
    size_t h = 2;
    if (b1 & 0x80) { /* servers must not mask */
      conn_fail(ctx, c, &ctx->protocol_errors);
      return SIZE_MAX;
    }
    if (plen == 126) {
      if (len - off < 4)
        break;
      plen = ((uint64_t)f[2] << 8) | f[3];
      h = 4;
    } else if (plen == 127) {
      if (len - off < 10)
        break;
      plen = 0;
      for (int i = 0; i < 8; i++)
        plen = (plen << 8) | f[2 + i];
      h = 10;
    }
    if (plen > WSL_MAX_MESSAGE) {
      conn_fail(ctx, c, &ctx->protocol_errors);
      return SIZE_MAX;
    }
    if (len - off - h < plen)
      break;
    if (!conn_on_frame(ctx, c, b0, data + off + h, (size_t)plen,
                       h + (size_t)plen))
      return SIZE_MAX;
    off += h + (size_t)plen;
  }
  return off;
}

/* ------------------------------------------------------ HTTP transports */

typedef struct wsl_head {
  int status;
  int64_t clen; /* Content-Length, -1 if absent */
  bool chunked;
  bool event_stream; /* Content-Type: text/event-stream */
  const char *token; /* X-Wshub-Session value, or NULL */
  size_t token_len;
} wsl_head_t;

/* Parses a response head (without the final CRLF CRLF). */
static bool head_parse(const char *p, size_t len, wsl_head_t *h) {
  memset(h, 0, sizeof *h);
  h->clen = -1;
  if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
    return false;
  for (int i = 9; i < 12; i++) {
    if (p[i] < '0' || p[i] > '9')
      return false;
    h->status = h->status * 10 + (p[i] - '0');
  }
  const char *end = p + len;
  const char *line = memmem(p, len, "\r\n", 2);
  while (line && line + 2 < end) {
    line += 2;
    const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
    if (!eol)
      eol = end;
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (!colon)
      return false;
    const char *v = colon + 1;
    while (v < eol && (*v == ' ' || *v == '\t'))
      v++;
    const char *ve = eol;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
      ve--;
    size_t nl = (size_t)(colon - line), vl = (size_t)(ve - v);
    if (head_name_is(line, nl, "content-length")) {
      uint64_t n = 0;
      const char *q = v;
      if (vl == 0 || vl > 15 || !parse_u64(&q, ve, &n) || q != ve)
        return false;
      h->clen = (int64_t)n;
    } else if (head_name_is(line, nl, "transfer-encoding")) {
      h->chunked = true; /* anything but identity: not supported */
    } else if (head_name_is(line, nl, "content-type")) {
      h->event_stream =
          vl >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
    } else if (head_name_is(line, nl, "x-wshub-session")) {
      h->token = v;
      h->token_len = vl;
    }
    line = eol;
  }
  return true;
}

/* A session token is what wshub issues: 32 lowercase hex characters. */
static bool token_ok(const char *t, size_t n) {
  if (n != WSL_TOKEN_LEN)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
      return false;
  return true;
}

/* A receiver's later answers name the same session; a different one means
 * the server forgot ours (counted as a protocol error; the new one is
 * used from then on). */
static void token_check(wsl_ctx_t *ctx, wsl_conn_t *c, const wsl_head_t *h) {
  if (!h->token || !token_ok(h->token, h->token_len) ||
      memcmp(h->token, c->token, WSL_TOKEN_LEN) == 0)
    return;
  ctx->protocol_errors++;
  memcpy(c->token, h->token, WSL_TOKEN_LEN);
}

static void sse_send_request(wsl_ctx_t *ctx, wsl_conn_t *c) {
  const wsl_opts_t *o = &ctx->opt;
  char req[2048];
  int n = snprintf(req, sizeof req,
                   "GET /events%s%s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Accept: text/event-stream\r\n"
                   "User-Agent: wsload\r\n\r\n",
                   o->query[0] ? "?" : "", o->query, o->hosthdr);
  conn_set_state(ctx, c, WSL_ST_HANDSHAKE);
  c->hphase = WSL_HP_HEAD;
  c->want_out = false;
  conn_set_events(ctx, c, false);
  ctx->requests++;
  conn_write(ctx, c, req, (size_t)n);
}

/* Sends c's next GET /poll (the first one: no session, no after; never
 * held by the server). */
static void poll_send(wsl_ctx_t *ctx, wsl_conn_t *c) {
  const wsl_opts_t *o = &ctx->opt;
  unsigned wait = o->transport == WSL_TR_POLL ? 0 : o->poll_wait;
  if (c->pending > 0 || c->state == WSL_ST_DONE)
    return;
  const char *amp = o->query[0] ? "&" : "";
  char req[2048];
  int n;
  if (c->state == WSL_ST_OPEN)
    n = snprintf(req, sizeof req,
                 "GET /poll?%s%safter=%" PRIu64 "&wait=%u HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "X-Wshub-Session: %s\r\n"
                 "User-Agent: wsload\r\n\r\n",
                 o->query, amp, c->after, wait, o->hosthdr, c->token);
  else
    n = snprintf(req, sizeof req,
                 "GET /poll?%s%swait=%u HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: wsload\r\n\r\n",
                 o->query, amp, wait, o->hosthdr);
  c->pending++;
  ctx->requests++;
  conn_write(ctx, c, req, (size_t)n);
}

/* Scans a poll answer {"type":"poll",…,"last_id":N,"messages":[{…},…]}:
 * every object of the top level's "messages" array is one message (its
 * first marker is counted, as for a WebSocket text); *last_id is set from
 * the top level's "last_id", *nmsgs to the number of messages. Strings are
 * skipped whole, so nothing inside a text can be taken for structure. Returns
 * false if the body is not such an object. */
static bool poll_on_body(wsl_ctx_t *ctx, wsl_conn_t *c, const char *p, size_t n,
                         uint64_t *last_id, uint64_t *nmsgs) {
  static const char k_last[] = "last_id", k_msgs[] = "messages";
  size_t i = 0;
  int depth = 0;
  bool found_last = false;
  bool msgs_next = false; /* the value after ':' is "messages"' */
  int msgs_depth = 0;     /* depth of the messages array while inside it */
  uint64_t nobj = 0;      /* message objects seen */
  const char *str = NULL; /* the last string seen at depth 1 */
  size_t str_len = 0;
  size_t obj = 0; /* start of the message object being scanned */
  while (i < n) {
    char ch = p[i];
    if (ch == '"') {
      size_t j = i + 1;
      for (;;) {
        const char *q = memchr(p + j, '"', n - j);
        if (!q)
          return false;
        size_t k = (size_t)(q - p), bs = 0;
        while (k - bs > i + 1 && p[k - bs - 1] == '\\')
          bs++;
        j = k + 1;
        if (bs % 2 == 0)
          break;
      }
      if (depth == 1) {
        str = p + i + 1;
        str_len = j - i - 2;
      }
      i = j;
      continue;
    }
    switch (ch) {
    case ':':
      if (depth == 1 && str) {
        if (str_len == sizeof k_last - 1 && memcmp(str, k_last, str_len) == 0) {
          const char *q = p + i + 1;
          while (q < p + n &&
                 (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
          found_last = parse_u64(&q, p + n, last_id);
        } else {
          msgs_next =
              str_len == sizeof k_msgs - 1 && memcmp(str, k_msgs, str_len) == 0;
        }
      }
      str = NULL;
      break;
    case '[':
    case '{':
      depth++;
      if (ch == '[' && depth == 2 && msgs_next)
        msgs_depth = 2;
      else if (ch == '{' && msgs_depth && depth == 3)
        obj = i;
      msgs_next = false;
      break;
    case ']':
    case '}':
      if (ch == '}' && msgs_depth && depth == 3) {
        msg_on_text(ctx, c, p + obj, i + 1 - obj);
        nobj++;
      } else if (ch == ']' && depth == msgs_depth) {
        msgs_depth = 0;
      }
      depth--;
      if (depth < 0)
        return false;
      break;
    case ',':
      str = NULL;
      if (depth == 1)
        msgs_next = false;
      break;
    default:
      break;
    }
    i++;
  }
  *nmsgs = nobj;
  return depth == 0 && found_last;
}

/* Parses events from an event stream's body: lines end with LF or CRLF,
 * an empty line ends an event, "data" lines are joined with LF (in place
 * when there is one, as wshub sends), "event: welcome" opens the
 * receiver, comments and other fields are skipped. Returns the bytes
 * consumed (whole events), or SIZE_MAX if c was closed. */
static size_t sse_parse(wsl_ctx_t *ctx, wsl_conn_t *c, const char *data,
                        size_t len) {
  size_t off = 0;
  for (;;) {
    size_t p = off;
    const char *d1 = NULL;
    size_t d1len = 0;
    unsigned ndata = 0;
    bool welcome = false;
    bool complete = false;
    while (p < len) {
      const char *nl = memchr(data + p, '\n', len - p);
      if (!nl)
        break;
      size_t e = (size_t)(nl - data);
      const char *line = data + p;
      size_t ll = e - p;
      if (ll > 0 && line[ll - 1] == '\r')
        ll--;
      p = e + 1;
      if (ll == 0) {
        complete = true;
        break;
      }
      if (line[0] == ':')
        continue;
      const char *colon = memchr(line, ':', ll);
      size_t nlen = colon ? (size_t)(colon - line) : ll;
      const char *v = colon ? colon + 1 : line + ll;
      size_t vl = colon ? ll - nlen - 1 : 0;
      if (vl > 0 && *v == ' ') {
        v++;
        vl--;
      }
      if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        if (ndata == 0) {
          d1 = v;
          d1len = vl;
        } else {
          if (ndata == 1) {
            c->msg.len = 0;
            buf_append(&c->msg, d1, d1len);
          }
          buf_append(&c->msg, "\n", 1);
          buf_append(&c->msg, v, vl);
        }
        ndata++;
      } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        welcome = vl == 7 && memcmp(v, "welcome", 7) == 0;
      }
    }
    if (!complete) {
      if (len - off > WSL_MAX_MESSAGE) {
        conn_fail(ctx, c, &ctx->protocol_errors);
        return SIZE_MAX;
      }
      return off;
    }
    off = p;
    if (ndata == 0)
      continue; /* a comment (": ping") or an event without data */
    ctx->frames_in++;
    if (c->state == WSL_ST_HANDSHAKE) {
      /* The welcome comes after the stream joined the room: from then on
       * it is a member. Whatever precedes it is not counted. */
      if (welcome) {
        conn_on_upgrade(ctx, c);
        if (c->state == WSL_ST_DONE)
          return SIZE_MAX;
      }
      continue;
    }
    if (ndata == 1)
      msg_on_text(ctx, c, d1, d1len);
    else
      msg_on_text(ctx, c, c->msg.data, c->msg.len);
  }
}

/* The answer to one of sender s's POSTs: 202, or an error that frees the
 * message's place in the window (it will not come back). When polling
 * with a window, the 202's id is kept until receiver s polls past it. */
static void post_on_response(wsl_ctx_t *ctx, wsl_conn_t *c, const wsl_head_t *h,
                             const char *body, size_t len) {
  uint32_t s = c->index - ctx->opt.connections;
  wsl_sender_t *sd = &ctx->senders[s];
  if (c->pending > 0)
    c->pending--;
  ctx->frames_in++;
  token_check(ctx, &ctx->conns[s], h);
  if (h->status != 202) {
    ctx->http_errors++;
    if (sd->inflight > 0)
      sd->inflight--;
    return;
  }
  if (!ctx->ids)
    return;
  /* {"type":"accepted","id":N}: the message's id. */
  const char *k = memmem(body, len, "\"id\":", 5);
  uint64_t id = 0;
  const char *q = k ? k + 5 : NULL;
  if (!q || !parse_u64(&q, body + len, &id)) {
    ctx->protocol_errors++;
    if (sd->inflight > 0)
      sd->inflight--;
    return;
  }
  if (id <= ctx->conns[s].after || sd->ids_len >= ctx->opt.window) {
    if (sd->inflight > 0)
      sd->inflight--; /* seen (or lost) already */
    return;
  }
  uint32_t w = ctx->opt.window;
  ctx->ids[(uint64_t)s * w + (sd->ids_head + sd->ids_len) % w] = id;
  sd->ids_len++;
}

/* Receiver s polled up to `after`: sender s's messages up to there have
 * come back or were dropped from the ring before it polled; either way
 * they are no longer in flight. */
static void ids_release(wsl_ctx_t *ctx, uint32_t s, uint64_t after) {
  wsl_sender_t *sd = &ctx->senders[s];
  uint32_t w = ctx->opt.window;
  while (sd->ids_len > 0 && ctx->ids[(uint64_t)s * w + sd->ids_head] <= after) {
    sd->ids_head = (sd->ids_head + 1) % w;
    sd->ids_len--;
    if (sd->inflight > 0)
      sd->inflight--;
  }
}

/* A poll's answer. Returns false if c was closed. */
static bool poll_on_response(wsl_ctx_t *ctx, wsl_conn_t *c, const wsl_head_t *h,
                             const char *body, size_t len) {
  uint64_t now = wsl_now();
  const wsl_opts_t *o = &ctx->opt;
  uint64_t interval = (uint64_t)o->poll_interval_ms * 1000000ull;
  bool poll = o->transport == WSL_TR_POLL;
  if (c->pending > 0)
    c->pending--;
  ctx->frames_in++;
  uint64_t last = c->after, nmsgs = 0;
  if (c->state == WSL_ST_HANDSHAKE) {
    /* The first poll: the session, and where the room stands. */
    if (h->status != 200 || !h->token || !token_ok(h->token, h->token_len) ||
        !poll_on_body(ctx, c, body, len, &last, &nmsgs)) {
      conn_fail(ctx, c, &ctx->handshake_errors);
      return false;
    }
    memcpy(c->token, h->token, WSL_TOKEN_LEN);
    c->token[WSL_TOKEN_LEN] = 0;
    c->after = last;
    c->retries = 0;
    conn_on_upgrade(ctx, c);
    /* Polling clients start at random phases of the interval. */
    heap_schedule(ctx, c, poll ? now + wsl_rand(ctx) % (interval + 1) : now);
    return true;
  }
  token_check(ctx, c, h);
  c->retries = 0;
  if (h->status == 200) {
    if (!poll_on_body(ctx, c, body, len, &last, &nmsgs)) {
      conn_fail(ctx, c, &ctx->protocol_errors);
      return false;
    }
    /* Ids up to last_id that the answer lacks: messages the room's ring
     * dropped before this poll came. */
    if (last > c->after && last - c->after > nmsgs)
      ctx->missed += last - c->after - nmsgs;
    if (last > c->after)
      c->after = last;
    if (ctx->ids && c->index < o->senders)
      ids_release(ctx, c->index, c->after);
  } else if (h->status != 204) {
    /* Refused (429, 503, …): counted, tried again a second later. */
    ctx->http_errors++;
    heap_schedule(ctx, c, now + WSL_NS);
    return true;
  }
  if (c->state == WSL_ST_OPEN)
    heap_schedule(ctx, c, poll ? now + interval : now);
  return true;
}

/* Parses HTTP responses (and an event stream's events). Returns the bytes
 * consumed, or SIZE_MAX if c was closed. */
static size_t http_parse(wsl_ctx_t *ctx, wsl_conn_t *c, const char *data,
                         size_t len) {
  size_t off = 0;
  while (off < len) {
    if (c->hphase == WSL_HP_STREAM) {
      size_t used = sse_parse(ctx, c, data + off, len - off);
      return used == SIZE_MAX ? SIZE_MAX : off + used;
    }
    uint64_t *err = c->state == WSL_ST_HANDSHAKE ? &ctx->handshake_errors
                                                 : &ctx->protocol_errors;
    const char *e = memmem(data + off, len - off, "\r\n\r\n", 4);
    if (!e) {
      if (len - off > WSL_MAX_HEAD) {
        conn_fail(ctx, c, err);
        return SIZE_MAX;
      }
      return off;
    }
    size_t hl = (size_t)(e - (data + off));
    wsl_head_t h;
    if (!head_parse(data + off, hl, &h)) {
      conn_fail(ctx, c, err);
      return SIZE_MAX;
    }
    if (c->kind == WSL_K_SSE) {
      /* The stream's head: then events until the connection ends. */
      if (c->state != WSL_ST_HANDSHAKE || h.status != 200 || !h.event_stream ||
          h.chunked || !h.token || !token_ok(h.token, h.token_len)) {
        conn_fail(ctx, c, err);
        return SIZE_MAX;
      }
      memcpy(c->token, h.token, WSL_TOKEN_LEN);
      c->token[WSL_TOKEN_LEN] = 0;
      c->hphase = WSL_HP_STREAM;
      off += hl + 4;
      continue;
    }
    /* Polls and POSTs: a whole body, by its length, before looking. */
    if (h.chunked || h.clen < 0 || (uint64_t)h.clen > WSL_MAX_MESSAGE) {
      conn_fail(ctx, c, err);
      return SIZE_MAX;
    }
    if (len - off - hl - 4 < (uint64_t)h.clen)
      return off;
    const char *body = e + 4;
    off += hl + 4 + (size_t)h.clen;
    if (c->kind == WSL_K_POST) {
      post_on_response(ctx, c, &h, body, (size_t)h.clen);
    } else if (!poll_on_response(ctx, c, &h, body, (size_t)h.clen)) {
      return SIZE_MAX;
    }
  }
  return off;
}

static void conn_feed(wsl_ctx_t *ctx, wsl_conn_t *c, const char *data,
                      size_t len) {
  size_t (*parse)(wsl_ctx_t *, wsl_conn_t *, const char *, size_t) =
      c->kind == WSL_K_WS ? conn_parse : http_parse;
  if (c->in.len > 0) {
    buf_append(&c->in, data, len);
    size_t used = parse(ctx, c, c->in.data, c->in.len);
    if (used != SIZE_MAX)
      buf_consume(&c->in, used);
    return;
  }
  size_t used = parse(ctx, c, data, len);
  if (used != SIZE_MAX && used < len)
    buf_append(&c->in, data + used, len - used);
}

static void conn_on_connected(wsl_ctx_t *ctx, wsl_conn_t *c);

/* The server address of c: the URL's, or with --ports the URL's host and
 * port number c->index % n of the list (several nodes of one cluster). */
static const struct sockaddr *conn_addr(const wsl_ctx_t *ctx,
                                        const wsl_conn_t *c,
                                        struct sockaddr_storage *tmp) {
  if (ctx->opt.nports == 0)
    return (const struct sockaddr *)&ctx->addr;
  memcpy(tmp, &ctx->addr, sizeof *tmp);
  uint16_t port = htons(ctx->opt.ports[c->index % ctx->opt.nports]);
  if (tmp->ss_family == AF_INET)
    ((struct sockaddr_in *)tmp)->sin_port = port;
  else
    ((struct sockaddr_in6 *)tmp)->sin6_port = port;
  return (const struct sockaddr *)tmp;
}

/* A new socket for c (bound to its source address), or -1. */
static int conn_socket(wsl_ctx_t *ctx, const wsl_conn_t *c) {
  int fd = socket(ctx->addr.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (ctx->opt.source_ips > 1) {
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + c->index % ctx->opt.source_ips);
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

/* The server closed an open HTTP connection: the socket goes, the
 * connection stays open (its session, its place in the heap) until it has
 * something to write. */
static void conn_drop(wsl_ctx_t *ctx, wsl_conn_t *c) {
  epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  c->in.len = 0;
  c->out.len = 0;
  c->pending = 0;
  c->want_out = false;
  c->dropped = true;
}

/* A dropped HTTP connection gets a new socket; what is written while it
 * connects is queued in out. */
static void conn_reconnect(wsl_ctx_t *ctx, wsl_conn_t *c) {
  c->dropped = false;
  c->hphase = WSL_HP_HEAD;
  ctx->reconnects++;
  int fd = conn_socket(ctx, c);
  if (fd < 0) {
    conn_fail(ctx, c, &ctx->connect_errors);
    return;
  }
  c->fd = fd;
  c->reconnecting = true;
  c->t_state = wsl_now();
  conn_set_events(ctx, c, true);
  struct sockaddr_storage tmp;
  if (connect(fd, conn_addr(ctx, c, &tmp), ctx->addrlen) == 0)
    conn_on_connected(ctx, c);
  else if (errno != EINPROGRESS)
    conn_fail(ctx, c, &ctx->connect_errors);
}

/* The server ended an HTTP connection. A request connection that had
 * nothing outstanding (a keep-alive timeout) is opened again when it next
 * writes; a poll connection whose poll was not answered at all is opened
 * again at once and the poll sent again (it is idempotent), a few times
 * in a row at most. Returns true if handled; false: the end is counted as
 * for a WebSocket. */
static bool http_on_eof(wsl_ctx_t *ctx, wsl_conn_t *c) {
  if (ctx->phase == WSL_PH_CLOSE || c->state != WSL_ST_OPEN ||
      c->kind == WSL_K_SSE || c->in.len > 0)
    return false;
  if (c->pending == 0) {
    conn_drop(ctx, c);
    return true;
  }
  if (c->kind == WSL_K_POST || c->retries >= WSL_MAX_RETRIES)
    return false;
  c->retries++;
  conn_drop(ctx, c);
  heap_schedule(ctx, c, wsl_now());
  return true;
}

static void conn_on_readable(wsl_ctx_t *ctx, wsl_conn_t *c) {
  for (int rounds = 0; rounds < 4 && c->fd >= 0; rounds++) {
    ssize_t n = recv(c->fd, ctx->rbuf, WSL_RBUF_SIZE, 0);
    if (n > 0) {
      ctx->bytes_in += (uint64_t)n;
      conn_feed(ctx, c, ctx->rbuf, (size_t)n);
      if (n < WSL_RBUF_SIZE)
        return;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    /* EOF or reset */
    if (c->kind != WSL_K_WS && http_on_eof(ctx, c))
      return;
    if (c->state == WSL_ST_HANDSHAKE)
      conn_fail(ctx, c, &ctx->handshake_errors);
    else if (c->state == WSL_ST_CLOSING)
      conn_finish(ctx, c);
    else
      conn_fail(ctx, c, NULL);
    return;
  }
}

static void conn_on_connected(wsl_ctx_t *ctx, wsl_conn_t *c) {
  int err = 0;
  socklen_t el = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
    conn_fail(ctx, c, &ctx->connect_errors);
    return;
  }
  if (c->reconnecting) {
    c->reconnecting = false;
    c->hphase = WSL_HP_HEAD;
    conn_set_events(ctx, c, false);
    conn_flush(ctx, c); /* what was written meanwhile */
    return;
  }
  switch (c->kind) {
  case WSL_K_WS:
    conn_send_request(ctx, c);
    break;
  case WSL_K_SSE:
    sse_send_request(ctx, c);
    break;
  case WSL_K_POLL:
    conn_set_state(ctx, c, WSL_ST_HANDSHAKE);
    c->hphase = WSL_HP_HEAD;
    c->want_out = false;
    conn_set_events(ctx, c, false);
    poll_send(ctx, c);
    break;
  default: /* a sender's POST connection: ready */
    ctx->settled++;
    conn_set_state(ctx, c, WSL_ST_OPEN);
    c->hphase = WSL_HP_HEAD;
    c->want_out = false;
    conn_set_events(ctx, c, false);
    break;
  }
}

static void conn_start(wsl_ctx_t *ctx, wsl_conn_t *c) {
  uint64_t now = wsl_now();
  if (ctx->t_first_connect == 0)
    ctx->t_first_connect = now;
  c->t_start = now;
  ctx->started++;
  int fd = conn_socket(ctx, c);
  if (fd < 0) {
    ctx->connect_errors++;
    ctx->settled++;
    c->failed = true;
    c->state = WSL_ST_DONE;
    return;
  }
  c->fd = fd;
  conn_set_state(ctx, c, WSL_ST_CONNECTING);
  conn_set_events(ctx, c, true);
  struct sockaddr_storage tmp;
  int r = connect(fd, conn_addr(ctx, c, &tmp), ctx->addrlen);
  if (r == 0)
    conn_on_connected(ctx, c);
  else if (errno != EINPROGRESS)
    conn_fail(ctx, c, &ctx->connect_errors);
}

/* ---------------------------------------------------------------- sending */

static size_t msg_build(wsl_ctx_t *ctx, uint32_t s, uint64_t seq, uint64_t ns) {
  char marker[96];
  int ml =
      snprintf(marker, sizeof marker, "wsl:%s:%" PRIu32 ":%" PRIu64 ":%" PRIu64,
               ctx->run_id, s, seq, ns);
  size_t tl = (size_t)ml;
  if (ctx->opt.payload > tl)
    tl = ctx->opt.payload;
  size_t need = tl + 64;
  if (need > ctx->text_cap) {
    char *p = realloc(ctx->text, need);
    if (!p)
      wsl_die_oom();
    ctx->text = p;
    ctx->text_cap = need;
  }
  static const char *const pre[] = {
      "", "{\"type\":\"message\",\"text\":\"",
      "{\"type\":\"message\",\"params\":{\"value\":\""};
  static const char *const post[] = {"", "\"}", "\"}}"};
  size_t o = strlen(pre[ctx->opt.format]);
  memcpy(ctx->text, pre[ctx->opt.format], o);
  memcpy(ctx->text + o, marker, (size_t)ml);
  if (tl > (size_t)ml) {
    ctx->text[o + (size_t)ml] = ' ';
    memset(ctx->text + o + (size_t)ml + 1, 'x', tl - (size_t)ml - 1);
  }
  o += tl;
  size_t pl = strlen(post[ctx->opt.format]);
  memcpy(ctx->text + o, post[ctx->opt.format], pl);
  return o + pl;
}

/* POST /messages with receiver s's session on sender s's connection,
 * pipelined after any it has not had an answer to. One write, built in
 * the frame scratch buffer. */
static void post_send(wsl_ctx_t *ctx, uint32_t s, const char *body,
                      size_t len) {
  wsl_conn_t *c = &ctx->conns[ctx->opt.connections + s];
  size_t need = len + 640;
  if (need > ctx->fbuf_cap) {
    char *p = realloc(ctx->fbuf, need);
    if (!p)
      wsl_die_oom();
    ctx->fbuf = p;
    ctx->fbuf_cap = need;
  }
  int hl = snprintf(ctx->fbuf, 640,
                    "POST /messages HTTP/1.1\r\n"
                    "Host: %s\r\n"
                    "X-Wshub-Session: %s\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n",
                    ctx->opt.hosthdr, ctx->conns[s].token, len);
  memcpy(ctx->fbuf + hl, body, len);
  c->pending++;
  ctx->requests++;
  conn_write(ctx, c, ctx->fbuf, (size_t)hl + len);
}

static void sender_send(wsl_ctx_t *ctx, uint32_t s, uint64_t now) {
  wsl_conn_t *c = &ctx->conns[s];
  wsl_sender_t *sd = &ctx->senders[s];
  sd->seq++;
  size_t len = msg_build(ctx, s, sd->seq, now);
  sd->inflight++;
  if (now >= ctx->t_measure) {
    ctx->sent++;
    ctx->expected += ctx->open;
  } else {
    ctx->warmup_sent++;
  }
  if (ctx->opt.transport == WSL_TR_WS)
    conn_send_message(ctx, c, 0x1, ctx->text, len);
  else
    post_send(ctx, s, ctx->text, len);
}

/* Sender s can send: its receiver is open (and, over HTTP, so is its POST
 * connection). */
static bool sender_ok(const wsl_ctx_t *ctx, uint32_t s) {
  if (ctx->conns[s].state != WSL_ST_OPEN)
    return false;
  return ctx->opt.transport == WSL_TR_WS ||
         ctx->conns[ctx->opt.connections + s].state == WSL_ST_OPEN;
}

/* A sender with --messages N is finished after its N-th message. */
static bool sender_finished(const wsl_ctx_t *ctx, uint32_t s) {
  return ctx->opt.messages > 0 && ctx->senders[s].seq >= ctx->opt.messages;
}

/* Sends what is due: on schedule (rate mode) or to fill the window. */
static void senders_pump(wsl_ctx_t *ctx) {
  if (ctx->phase != WSL_PH_SEND)
    return;
  uint64_t now = wsl_now();
  if (now >= ctx->t_send_end)
    return;
  uint32_t w = ctx->opt.window;
  uint64_t interval =
      ctx->opt.rate > 0
          ? (uint64_t)((double)ctx->opt.senders * 1e9 / ctx->opt.rate)
          : 0;
  for (uint32_t s = 0; s < ctx->opt.senders; s++) {
    wsl_sender_t *sd = &ctx->senders[s];
    if (!sender_ok(ctx, s) || sender_finished(ctx, s))
      continue;
    if (interval == 0) {
      uint64_t t = now;
      while (sd->inflight < w && sender_ok(ctx, s) && t < ctx->t_send_end &&
             !sender_finished(ctx, s)) {
        sender_send(ctx, s, t);
        t = wsl_now();
      }
      continue;
    }
    while (sd->next_ns <= now && (w == 0 || sd->inflight < w) &&
           sender_ok(ctx, s) && !sender_finished(ctx, s)) {
      sender_send(ctx, s, now);
      sd->next_ns += interval;
    }
  }
}

/* Milliseconds until the next scheduled send, or -1 for none. */
static int senders_wait_ms(wsl_ctx_t *ctx, uint64_t now) {
  if (ctx->phase != WSL_PH_SEND || ctx->opt.rate <= 0)
    return -1;
  uint64_t next = UINT64_MAX;
  for (uint32_t s = 0; s < ctx->opt.senders; s++) {
    wsl_sender_t *sd = &ctx->senders[s];
    if (sender_ok(ctx, s) && !sender_finished(ctx, s) &&
        (ctx->opt.window == 0 || sd->inflight < ctx->opt.window) &&
        sd->next_ns < next)
      next = sd->next_ns;
  }
  if (next == UINT64_MAX)
    return -1;
  if (next <= now)
    return 0;
  return (int)((next - now + 999999) / 1000000);
}

/* Sends the polls that are due (not in the close phase). */
static void polls_pump(wsl_ctx_t *ctx, uint64_t now) {
  if (ctx->phase == WSL_PH_CLOSE)
    return;
  while (ctx->heap_len > 0) {
    wsl_conn_t *c = &ctx->conns[ctx->heap[0]];
    if (c->t_next > now)
      break;
    heap_remove(ctx, c);
    poll_send(ctx, c);
  }
}

/* Milliseconds until the next poll is due, or -1 for none. */
static int polls_wait_ms(const wsl_ctx_t *ctx, uint64_t now) {
  if (ctx->heap_len == 0 || ctx->phase == WSL_PH_CLOSE)
    return -1;
  uint64_t next = ctx->conns[ctx->heap[0]].t_next;
  return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

/* ------------------------------------------------------------ event loop */

/* Starts connections as the rate and concurrency caps allow. */
static void conns_ramp(wsl_ctx_t *ctx, uint64_t now) {
  if (ctx->phase != WSL_PH_CONNECT)
    return;
  uint32_t limit = ctx->nconns;
  if (ctx->opt.connect_rate > 0 && ctx->t_first_connect) {
    double allowed =
        (double)(now - ctx->t_first_connect) / 1e9 * ctx->opt.connect_rate + 1;
    if (allowed < limit)
      limit = (uint32_t)allowed;
  }
  while (ctx->started < limit && ctx->inflight < ctx->opt.concurrency)
    conn_start(ctx, &ctx->conns[ctx->started]);
}

/* Times out connections stuck connecting, upgrading or closing. */
static void conns_sweep(wsl_ctx_t *ctx) {
  uint64_t now = wsl_now();
  uint64_t t_conn = wsl_secs_ns(ctx->opt.timeout);
  for (uint32_t i = 0; i < ctx->started; i++) {
    wsl_conn_t *c = &ctx->conns[i];
    if ((c->state == WSL_ST_CONNECTING || c->reconnecting) &&
        now - c->t_state > t_conn)
      conn_fail(ctx, c, &ctx->connect_errors);
    else if (c->state == WSL_ST_HANDSHAKE && now - c->t_state > t_conn)
      conn_fail(ctx, c, &ctx->handshake_errors);
    else if (c->state == WSL_ST_CLOSING && now - c->t_state > WSL_CLOSE_WAIT_NS)
      conn_finish(ctx, c);
  }
}

static void ctx_progress(wsl_ctx_t *ctx, uint64_t now) {
  if (ctx->opt.quiet || now - ctx->t_progress < WSL_NS)
    return;
  ctx->t_progress = now;
  static const char *const names[] = {"connect", "hold", "send", "drain",
                                      "close"};
  fprintf(stderr,
          "wsload: %6.1fs %-7s started=%u open=%u connected=%u errors=%" PRIu64
          " sent=%" PRIu64 " delivered=%" PRIu64 "/%" PRIu64 " p99=%.3fms\n",
          (double)(now - ctx->t_begin) / 1e9, names[ctx->phase], ctx->started,
          ctx->open, ctx->connected,
          ctx->connect_errors + ctx->handshake_errors + ctx->protocol_errors +
              ctx->closed_unexpected,
          ctx->sent, ctx->delivered, ctx->expected,
          hist_pct_ms(&ctx->lat, 0.99));
}

static void ctx_on_signal(wsl_ctx_t *ctx) {
  struct signalfd_siginfo si;
  while (read(ctx->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (!ctx->interrupted && !ctx->opt.quiet)
      fputs("wsload: interrupted, finishing\n", stderr);
    ctx->interrupted = true;
  }
}

typedef bool (*wsl_done_fn)(wsl_ctx_t *ctx);

/* Runs the loop until done(ctx), the deadline, or an interrupt. */
static void ctx_run(wsl_ctx_t *ctx, wsl_done_fn done, uint64_t deadline) {
  struct epoll_event evs[512];
  for (;;) {
    uint64_t now = wsl_now();
    conns_ramp(ctx, now);
    senders_pump(ctx);
    polls_pump(ctx, now);
    if (now - ctx->t_sweep >= 100000000ull) {
      ctx->t_sweep = now;
      conns_sweep(ctx);
    }
    ctx_progress(ctx, now);
    if (done(ctx) || ctx->interrupted || now >= deadline)
      return;
    uint64_t left_ms = (deadline - now + 999999) / 1000000;
    int wait = left_ms > 100 ? 100 : (int)left_ms;
    int sw = senders_wait_ms(ctx, now);
    if (sw >= 0 && sw < wait)
      wait = sw;
    int pw = polls_wait_ms(ctx, now);
    if (pw >= 0 && pw < wait)
      wait = pw;
    if (ctx->phase == WSL_PH_CONNECT && ctx->opt.connect_rate > 0 &&
        ctx->started < ctx->nconns && wait > 1)
      wait = 1;
    int n = epoll_wait(ctx->epfd, evs, 512, wait);
    if (n < 0 && errno != EINTR) {
      perror("wsload: epoll_wait");
      ctx->interrupted = true;
      return;
    }
    for (int i = 0; i < n; i++) {
      uint32_t id = evs[i].data.u32;
      if (id == WSL_SIGNAL_TAG) {
        ctx_on_signal(ctx);
        continue;
      }
      wsl_conn_t *c = &ctx->conns[id];
      if (c->fd < 0)
        continue;
      if (c->state == WSL_ST_CONNECTING || c->reconnecting) {
        conn_on_connected(ctx, c);
        continue;
      }
      if (evs[i].events & EPOLLOUT)
        conn_flush(ctx, c);
      if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        conn_on_readable(ctx, c);
    }
  }
}

static bool done_connect(wsl_ctx_t *ctx) {
  return ctx->started == ctx->nconns && ctx->settled == ctx->started &&
         ctx->inflight == 0;
}

static bool done_never(wsl_ctx_t *ctx) {
  return ctx->open == 0;
}

static bool done_sending(wsl_ctx_t *ctx) {
  if (ctx->open == 0)
    return true;
  if (ctx->opt.messages == 0)
    return false;
  for (uint32_t s = 0; s < ctx->opt.senders; s++)
    if (sender_ok(ctx, s) && !sender_finished(ctx, s))
      return false;
  return true;
}

static bool done_drain(wsl_ctx_t *ctx) {
  return ctx->delivered >= ctx->expected || ctx->open == 0;
}

static bool done_closed(wsl_ctx_t *ctx) {
  for (uint32_t i = 0; i < ctx->started; i++)
    if (ctx->conns[i].state != WSL_ST_DONE &&
        ctx->conns[i].state != WSL_ST_IDLE)
      return false;
  return true;
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *f) {
  fputs(
      "usage: wsload --url ws://HOST:PORT/PATH [options]\n"
      "  --transport T       ws | sse | longpoll | poll (default ws); over\n"
      "                      HTTP the URL's query (room=...) goes to /events\n"
      "                      and /poll, and http:// URLs are accepted too\n"
      "  --poll-interval MS  poll: a GET /poll?wait=0 every MS after the last\n"
      "                      answer (default 1000)\n"
      "  --poll-wait S       longpoll: wait=S, 1..30 (default 25)\n"
      "  --connections C     connections to open (default 100)\n"
      "  --senders S         connections 0..S-1 send (default 10, at most C;\n"
      "                      0 = none)\n"
      "  --rate R            aggregate messages/s; 0 = as fast as the window\n"
      "                      allows (default 0)\n"
      "  --window W          unanswered messages per sender (default 4;\n"
      "                      0 = unlimited, only with --rate)\n"
      "  --duration D        seconds of measured sending (default 10)\n"
      "  --warmup W          seconds of unmeasured sending first (default 0)\n"
      "  --messages N        each sender stops after N messages (default 0 =\n"
      "                      until --duration ends)\n"
      "  --drain T           wait up to T s after the last send (default 5)\n"
      "  --payload BYTES     pad each message text to BYTES (default: marker)\n"
      "  --format F          raw | chat-json | lecture2 (default raw; over\n"
      "                      HTTP chat-json, raw is not allowed)\n"
      "  --source-ips N      bind round-robin to 127.0.0.1..127.0.0.N (default "
      "1)\n"
      "  --connect-rate R    new connections per second (default 0 = no cap)\n"
      "  --concurrency K     connections being set up at once (default 256)\n"
      "  --timeout T         per-connection connect+handshake timeout (default "
      "10)\n"
      "  --connect-timeout T cap on the whole connect phase (default 120)\n"
      "  --hold D            connect all, print 'connected N', hold D s idle\n"
      "  --handshake-only    measure upgrades/s: connect, upgrade, close\n"
      "  --deflate           ws: offer permessage-deflate (client_no_context_\n"
      "                      takeover; client_max_window_bits) and require\n"
      "                      it; inflate what comes with RSV1, compress what\n"
      "                      is sent\n"
      "  --deflate-threshold BYTES  compress messages of at least BYTES\n"
      "                      (default 64)\n"
      "  --deflate-level L   zlib level 1..9 for what is sent (default 6)\n"
      "  --ports P1,P2,...   connect to the URL's host on these ports "
      "instead,\n"
      "                      connection i to port i %% n (cluster nodes)\n"
      "  --deflate-cache N   slots of the cache of messages compressed on\n"
      "                      their own and what they inflate to (default\n"
      "                      65536; 0 = inflate every message)\n"
      "  --quiet             no progress on stderr\n"
      "  -h, --help\n",
      f);
}

static bool opt_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v != v || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

static bool opt_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
  double v;
  if (!opt_num(s, lo, hi, &v) || v != (double)(uint32_t)v)
    return false;
  *out = (uint32_t)v;
  return true;
}

static bool parse_url(wsl_opts_t *o, const char *url) {
  const char *h;
  o->url_http = strncmp(url, "http://", 7) == 0;
  if (strncmp(url, "ws://", 5) == 0)
    h = url + 5;
  else if (o->url_http)
    h = url + 7;
  else
    return false;
  const char *hend;
  const char *rest;
  if (*h == '[') {
    hend = strchr(h, ']');
    if (!hend)
      return false;
    h++;
    rest = hend + 1;
  } else {
    hend = h + strcspn(h, ":/?");
    rest = hend;
  }
  size_t hl = (size_t)(hend - h);
  if (hl == 0 || hl >= sizeof o->host)
    return false;
  memcpy(o->host, h, hl);
  o->host[hl] = 0;
  strcpy(o->port, "80");
  if (*rest == ':') {
    rest++;
    size_t pl = strspn(rest, "0123456789");
    if (pl == 0 || pl >= sizeof o->port)
      return false;
    memcpy(o->port, rest, pl);
    o->port[pl] = 0;
    rest += pl;
  }
  bool v6 = strchr(o->host, ':') != NULL;
  snprintf(o->hosthdr, sizeof o->hosthdr, "%s%s%s:%s", v6 ? "[" : "", o->host,
           v6 ? "]" : "", o->port);
  const char *q = strchr(rest, '?');
  o->query[0] = 0;
  if (q) {
    /* Sent as it is on the request line: no spaces or control bytes. */
    for (const char *p = q + 1; *p; p++)
      if ((unsigned char)*p <= ' ' || *p == 0x7f)
        return false;
    if (strlen(q + 1) >= sizeof o->query)
      return false;
    strcpy(o->query, q + 1);
  }
  if (*rest == 0) {
    strcpy(o->path, "/");
    return true;
  }
  if (*rest == '?') {
    return (size_t)snprintf(o->path, sizeof o->path, "/%s", rest) <
           sizeof o->path;
  }
  if (*rest != '/' || strlen(rest) >= sizeof o->path)
    return false;
  strcpy(o->path, rest);
  return true;
}

static int parse_opts(wsl_opts_t *o, int argc, char **argv) {
  enum {
    O_URL = 256,
    O_PORTS,
    O_CONNS,
    O_SENDERS,
    O_RATE,
    O_WINDOW,
    O_DURATION,
    O_WARMUP,
    O_DRAIN,
    O_PAYLOAD,
    O_FORMAT,
    O_SRCIPS,
    O_CRATE,
    O_CONC,
    O_TIMEOUT,
    O_CTIMEOUT,
    O_HOLD,
    O_HSONLY,
    O_QUIET,
    O_MESSAGES,
    O_TRANSPORT,
    O_POLL_INTERVAL,
    O_POLL_WAIT,
    O_DEFLATE,
    O_DEFLATE_THRESHOLD,
    O_DEFLATE_LEVEL,
    O_DEFLATE_CACHE,
  };
  static const struct option longopts[] = {
      {"url", required_argument, NULL, O_URL},
      {"ports", required_argument, NULL, O_PORTS},
      {"connections", required_argument, NULL, O_CONNS},
      {"senders", required_argument, NULL, O_SENDERS},
      {"rate", required_argument, NULL, O_RATE},
      {"window", required_argument, NULL, O_WINDOW},
      {"duration", required_argument, NULL, O_DURATION},
      {"warmup", required_argument, NULL, O_WARMUP},
      {"drain", required_argument, NULL, O_DRAIN},
      {"payload", required_argument, NULL, O_PAYLOAD},
      {"format", required_argument, NULL, O_FORMAT},
      {"source-ips", required_argument, NULL, O_SRCIPS},
      {"connect-rate", required_argument, NULL, O_CRATE},
      {"concurrency", required_argument, NULL, O_CONC},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"connect-timeout", required_argument, NULL, O_CTIMEOUT},
      {"hold", required_argument, NULL, O_HOLD},
      {"handshake-only", no_argument, NULL, O_HSONLY},
      {"quiet", no_argument, NULL, O_QUIET},
      {"messages", required_argument, NULL, O_MESSAGES},
      {"transport", required_argument, NULL, O_TRANSPORT},
      {"poll-interval", required_argument, NULL, O_POLL_INTERVAL},
      {"poll-wait", required_argument, NULL, O_POLL_WAIT},
      {"deflate", no_argument, NULL, O_DEFLATE},
      {"deflate-threshold", required_argument, NULL, O_DEFLATE_THRESHOLD},
      {"deflate-level", required_argument, NULL, O_DEFLATE_LEVEL},
      {"deflate-cache", required_argument, NULL, O_DEFLATE_CACHE},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(o, 0, sizeof *o);
  o->connections = 100;
  o->senders = 10;
  o->window = 4;
  o->duration = 10;
  o->source_ips = 1;
  o->concurrency = 256;
  o->drain = 5;
  o->timeout = 10;
  o->connect_timeout = 120;
  o->poll_interval_ms = 1000;
  o->poll_wait = 25;
  o->deflate_threshold = 64;
  o->deflate_level = 6;
  o->deflate_cache = 65536;
  bool have_url = false;
  bool senders_set = false;
  int ch;
  int li = -1;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
    bool ok = true;
    const char *a = optarg;
    switch (ch) {
    case O_URL:
      ok = have_url = parse_url(o, a);
      break;
    case O_PORTS: {
      /* Comma-separated ports: the URL's host on each (nodes of a cluster,
       * connections spread round-robin). */
      o->nports = 0;
      ok = true;
      for (const char *p = a; ok && *p;) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        ok = end != p && v >= 1 && v <= 65535 && o->nports < 16 &&
             (*end == ',' || *end == '\0');
        if (ok)
          o->ports[o->nports++] = (uint16_t)v;
        p = *end == ',' ? end + 1 : end;
      }
      ok = ok && o->nports > 0;
      break;
    }
    case O_CONNS:
      ok = opt_u32(a, 1, 10000000, &o->connections);
      break;
    case O_SENDERS:
      ok = opt_u32(a, 0, 10000000, &o->senders);
      senders_set = true;
      break;
    case O_RATE:
      ok = opt_num(a, 0, 1e9, &o->rate);
      break;
    case O_WINDOW:
      ok = opt_u32(a, 0, 1000000, &o->window);
      o->window_set = true;
      break;
    case O_DURATION:
      ok = opt_num(a, 0, 86400, &o->duration);
      break;
    case O_WARMUP:
      ok = opt_num(a, 0, 86400, &o->warmup);
      break;
    case O_DRAIN:
      ok = opt_num(a, 0, 3600, &o->drain);
      break;
    case O_PAYLOAD:
      ok = opt_u32(a, 0, 16u * 1024 * 1024, &o->payload);
      break;
    case O_FORMAT:
      o->format_set = true;
      if (strcmp(a, "raw") == 0)
        o->format = WSL_FMT_RAW;
      else if (strcmp(a, "chat-json") == 0)
        o->format = WSL_FMT_CHAT_JSON;
      else if (strcmp(a, "lecture2") == 0)
        o->format = WSL_FMT_LECTURE2;
      else
        ok = false;
      break;
    case O_SRCIPS:
      ok = opt_u32(a, 1, 254, &o->source_ips);
      break;
    case O_CRATE:
      ok = opt_num(a, 0, 1e9, &o->connect_rate);
      break;
    case O_CONC:
      ok = opt_u32(a, 1, 10000000, &o->concurrency);
      break;
    case O_TIMEOUT:
      ok = opt_num(a, 0.001, 3600, &o->timeout);
      break;
    case O_CTIMEOUT:
      ok = opt_num(a, 0.001, 86400, &o->connect_timeout);
      break;
    case O_HOLD:
      ok = opt_num(a, 0, 86400, &o->hold);
      o->hold_set = true;
      break;
    case O_HSONLY:
      o->handshake_only = true;
      break;
    case O_QUIET:
      o->quiet = true;
      break;
    case O_TRANSPORT:
      if (strcmp(a, "ws") == 0)
        o->transport = WSL_TR_WS;
      else if (strcmp(a, "sse") == 0)
        o->transport = WSL_TR_SSE;
      else if (strcmp(a, "longpoll") == 0)
        o->transport = WSL_TR_LONGPOLL;
      else if (strcmp(a, "poll") == 0)
        o->transport = WSL_TR_POLL;
      else
        ok = false;
      break;
    case O_POLL_INTERVAL:
      ok = opt_u32(a, 1, 3600000, &o->poll_interval_ms);
      break;
    case O_POLL_WAIT:
      ok = opt_u32(a, 1, 30, &o->poll_wait);
      break;
    case O_DEFLATE:
      o->deflate = true;
      break;
    case O_DEFLATE_THRESHOLD:
      ok = opt_u32(a, 0, WSL_MAX_MESSAGE, &o->deflate_threshold);
      break;
    case O_DEFLATE_LEVEL:
      ok = opt_u32(a, 1, 9, &o->deflate_level);
      break;
    case O_DEFLATE_CACHE:
      ok = opt_u32(a, 0, 1u << 20, &o->deflate_cache);
      break;
    case O_MESSAGES: {
      double v;
      ok = opt_num(a, 0, 4e9, &v) && v == (double)(uint64_t)v;
      o->messages = (uint64_t)v;
      break;
    }
    case 'h':
      usage(stdout);
      exit(0);
    default:
      fprintf(stderr, "wsload: unknown option or missing value: %s\n",
              argv[optind - 1]);
      return -1;
    }
    if (!ok) {
      fprintf(stderr, "wsload: bad value for --%s: %s\n",
              li >= 0 ? longopts[li].name : "?", a ? a : "");
      return -1;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "wsload: unexpected argument: %s\n", argv[optind]);
    return -1;
  }
  if (!have_url) {
    fputs("wsload: --url ws://HOST:PORT/PATH is required\n", stderr);
    return -1;
  }
  if (o->hold_set && o->handshake_only) {
    fputs("wsload: --hold and --handshake-only exclude each other\n", stderr);
    return -1;
  }
  if ((o->hold_set || o->handshake_only) && !senders_set)
    o->senders = 0;
  if ((o->hold_set || o->handshake_only) && o->senders > 0) {
    fputs("wsload: --hold and --handshake-only send nothing (--senders 0)\n",
          stderr);
    return -1;
  }
  if (!senders_set && o->senders > o->connections)
    o->senders = o->connections;
  if (o->senders > o->connections) {
    fputs("wsload: --senders exceeds --connections\n", stderr);
    return -1;
  }
  if (o->rate == 0 && o->window == 0 && o->senders > 0) {
    fputs("wsload: --window 0 (unlimited) needs --rate\n", stderr);
    return -1;
  }
  if (o->transport == WSL_TR_WS && o->url_http) {
    fputs("wsload: --transport ws needs a ws:// URL\n", stderr);
    return -1;
  }
  if (o->transport != WSL_TR_WS) {
    if (o->handshake_only) {
      fputs("wsload: --handshake-only is for --transport ws\n", stderr);
      return -1;
    }
    if (o->deflate) {
      fputs("wsload: --deflate is for --transport ws\n", stderr);
      return -1;
    }
    if (o->format_set && o->format == WSL_FMT_RAW) {
      fputs("wsload: HTTP transports POST JSON: --format chat-json or "
            "lecture2\n",
            stderr);
      return -1;
    }
    if (!o->format_set)
      o->format = WSL_FMT_CHAT_JSON;
    if ((uint64_t)o->connections + o->senders > 10000000) {
      fputs("wsload: too many connections\n", stderr);
      return -1;
    }
    if ((uint64_t)o->senders * o->window > 16u * 1024 * 1024) {
      fputs("wsload: --senders x --window too large for HTTP\n", stderr);
      return -1;
    }
  }
  return 0;
}

/* ----------------------------------------------------------------- result */

static void print_result(wsl_ctx_t *ctx) {
  const wsl_opts_t *o = &ctx->opt;
  const char *mode = o->handshake_only ? "handshake"
                     : o->hold_set     ? "hold"
                     : o->senders == 0 ? "connect"
                     : o->rate > 0     ? "fanout"
                                       : "saturation";
  static const char *const fmts[] = {"raw", "chat-json", "lecture2"};
  static const char *const transports[] = {"ws", "sse", "longpoll", "poll"};
  double send_s = ctx->t_send_end > ctx->t_measure && ctx->t_measure
                      ? (double)(ctx->t_send_end - ctx->t_measure) / 1e9
                      : 0;
  double deliv_s = ctx->t_last_delivery > ctx->t_measure && ctx->t_measure
                       ? (double)(ctx->t_last_delivery - ctx->t_measure) / 1e9
                       : 0;
  if (deliv_s < send_s)
    deliv_s = send_s;
  double conn_s =
      ctx->t_connected > ctx->t_first_connect && ctx->t_first_connect
          ? (double)(ctx->t_connected - ctx->t_first_connect) / 1e9
          : 0;
  double up_s =
      ctx->t_last_upgrade > ctx->t_first_connect && ctx->t_first_connect
          ? (double)(ctx->t_last_upgrade - ctx->t_first_connect) / 1e9
          : 0;
  uint64_t errors = ctx->connect_errors + ctx->handshake_errors +
                    ctx->protocol_errors + ctx->http_errors +
                    ctx->closed_unexpected;
  printf("RESULT mode=%s transport=%s conns=%u connected=%u senders=%u"
         " rate=%g window=%u format=%s payload=%u sent=%" PRIu64
         " expected=%" PRIu64 " delivered=%" PRIu64
         " delivery_ratio=%.4f duplicates=%" PRId64 " missed=%" PRIu64
         " msgs_per_s=%.1f deliveries_per_s=%.1f"
         " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f"
         " mean_ms=%.3f upgrades=%u upgrades_per_s=%.1f hs_p50_ms=%.3f"
         " hs_p99_ms=%.3f hs_max_ms=%.3f connect_s=%.3f"
         " connect_errors=%" PRIu64 " handshake_errors=%" PRIu64
         " protocol_errors=%" PRIu64 " http_errors=%" PRIu64 " closed=%" PRIu64
         " errors=%" PRIu64 " frames_in=%" PRIu64 " receipts=%" PRIu64
         " bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " requests=%" PRIu64
         " reconnects=%" PRIu64 " duration_s=%.3f elapsed_s=%.3f"
         " deflate=%s deflate_conns=%" PRIu64 " msgs_in_compressed=%" PRIu64
         " msgs_in_plain=%" PRIu64 " inflates=%" PRIu64
         " inflate_cache_hits=%" PRIu64 " msg_wire_bytes_in=%" PRIu64
         " msg_payload_bytes_in=%" PRIu64 " delivered_wire_bytes=%" PRIu64
         " delivered_payload_bytes=%" PRIu64 " msgs_out_compressed=%" PRIu64
         " msgs_out_plain=%" PRIu64 " msg_wire_bytes_out=%" PRIu64
         " msg_payload_bytes_out=%" PRIu64 "\n",
         mode, transports[o->transport], o->connections, ctx->connected,
         o->senders, o->rate, o->window, fmts[o->format], o->payload, ctx->sent,
         ctx->expected, ctx->delivered,
         ctx->expected ? (double)ctx->delivered / (double)ctx->expected : 0.0,
         ctx->last_seq || o->senders == 0 ? ctx->duplicates : -1, ctx->missed,
         send_s > 0 ? (double)ctx->sent / send_s : 0.0,
         deliv_s > 0 ? (double)ctx->delivered / deliv_s : 0.0,
         hist_pct_ms(&ctx->lat, 0.50), hist_pct_ms(&ctx->lat, 0.90),
         hist_pct_ms(&ctx->lat, 0.99), hist_pct_ms(&ctx->lat, 0.999),
         (double)ctx->lat.max_ns / 1e6, hist_mean_ms(&ctx->lat), ctx->connected,
         up_s > 0 ? (double)ctx->connected / up_s : 0.0,
         hist_pct_ms(&ctx->hs, 0.50), hist_pct_ms(&ctx->hs, 0.99),
         (double)ctx->hs.max_ns / 1e6, conn_s, ctx->connect_errors,
         ctx->handshake_errors, ctx->protocol_errors, ctx->http_errors,
         ctx->closed_unexpected, errors, ctx->frames_in, ctx->receipts,
         ctx->bytes_in, ctx->bytes_out, ctx->requests, ctx->reconnects, send_s,
         (double)(ctx->t_end - ctx->t_begin) / 1e9, o->deflate ? "on" : "off",
         ctx->pmd_conns, ctx->msgs_in_compressed, ctx->msgs_in_plain,
         ctx->inflates, ctx->icache_hits, ctx->msg_wire_in, ctx->msg_payload_in,
         ctx->delivered_wire, ctx->delivered_payload, ctx->msgs_out_compressed,
         ctx->msgs_out_plain, ctx->msg_wire_out, ctx->msg_payload_out);
  fflush(stdout);
}

/* ------------------------------------------------------------------- main */

static int ctx_init(wsl_ctx_t *ctx) {
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int r = getaddrinfo(ctx->opt.host, ctx->opt.port, &hints, &ai);
  if (r != 0 || !ai) {
    fprintf(stderr, "wsload: cannot resolve %s: %s\n", ctx->opt.host,
            gai_strerror(r));
    return -1;
  }
  memcpy(&ctx->addr, ai->ai_addr, ai->ai_addrlen);
  ctx->addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);
  if (ctx->opt.source_ips > 1 && ctx->addr.ss_family != AF_INET) {
    fputs("wsload: --source-ips needs an IPv4 server address\n", stderr);
    return -2;
  }

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
      rl.rlim_cur < (rlim_t)ctx->opt.connections + ctx->opt.senders + 16 &&
      !ctx->opt.quiet)
    fprintf(stderr, "wsload: warning: open file limit %llu < %u connections\n",
            (unsigned long long)rl.rlim_cur, ctx->opt.connections);

  uint64_t seed;
  if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
    seed = wsl_now();
  ctx->rng = seed | 1;
  snprintf(ctx->run_id, sizeof ctx->run_id, "%08" PRIx32,
           (uint32_t)(wsl_rand(ctx) >> 32));

  const wsl_opts_t *o = &ctx->opt;
  bool http = o->transport != WSL_TR_WS;
  ctx->nconns = o->connections + (http ? o->senders : 0);
  ctx->conns = calloc(ctx->nconns, sizeof *ctx->conns);
  if (o->transport == WSL_TR_LONGPOLL || o->transport == WSL_TR_POLL) {
    ctx->heap = calloc(o->connections, sizeof *ctx->heap);
    if (!ctx->heap)
      wsl_die_oom();
  }
  ctx->senders =
      calloc(ctx->opt.senders ? ctx->opt.senders : 1, sizeof *ctx->senders);
  ctx->rbuf = malloc(WSL_RBUF_SIZE);
  if (!ctx->conns || !ctx->senders || !ctx->rbuf)
    wsl_die_oom();
  if ((o->transport == WSL_TR_LONGPOLL || o->transport == WSL_TR_POLL) &&
      o->window > 0 && o->senders > 0) {
    ctx->ids = calloc((size_t)o->senders * o->window, sizeof *ctx->ids);
    if (!ctx->ids)
      wsl_die_oom();
  }
  if (o->deflate && o->deflate_cache > 0) {
    ctx->icache = calloc(o->deflate_cache, sizeof *ctx->icache);
    if (!ctx->icache)
      wsl_die_oom();
  }
  uint64_t track = (uint64_t)ctx->opt.connections * ctx->opt.senders;
  if (track > 0 && track <= WSL_MAX_SEQ_TRACK) {
    ctx->last_seq = calloc(track, sizeof *ctx->last_seq);
    if (!ctx->last_seq)
      wsl_die_oom();
  }
  static const uint8_t kinds[] = {WSL_K_WS, WSL_K_SSE, WSL_K_POLL, WSL_K_POLL};
  for (uint32_t i = 0; i < ctx->nconns; i++) {
    ctx->conns[i].fd = -1;
    ctx->conns[i].index = i;
    ctx->conns[i].kind = i < o->connections ? kinds[o->transport] : WSL_K_POST;
  }

  ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, NULL);
  ctx->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (ctx->epfd < 0 || ctx->sigfd < 0) {
    perror("wsload: epoll/signalfd");
    return -1;
  }
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.u32 = WSL_SIGNAL_TAG;
  epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->sigfd, &ev);
  return 0;
}

static void ctx_free(wsl_ctx_t *ctx) {
  for (uint32_t i = 0; ctx->conns && i < ctx->nconns; i++) {
    wsl_conn_t *c = &ctx->conns[i];
    if (c->fd >= 0)
      close(c->fd);
    buf_free(&c->in);
    buf_free(&c->msg);
    buf_free(&c->out);
    pmd_inflater_free(&c->zin);
  }
  pmd_inflater_free(&ctx->zinf);
  for (size_t i = 0; i < sizeof ctx->zdef / sizeof ctx->zdef[0]; i++) {
    if (ctx->zdef[i]) {
      deflateEnd(ctx->zdef[i]);
      free(ctx->zdef[i]);
    }
  }
  buf_free(&ctx->ibuf);
  buf_free(&ctx->zbuf);
  for (uint32_t i = 0; ctx->icache && i < ctx->opt.deflate_cache; i++) {
    buf_free(&ctx->icache[i].z);
    buf_free(&ctx->icache[i].out);
  }
  free(ctx->icache);
  free(ctx->conns);
  free(ctx->heap);
  free(ctx->senders);
  free(ctx->last_seq);
  free(ctx->ids);
  free(ctx->rbuf);
  free(ctx->fbuf);
  free(ctx->text);
  if (ctx->epfd >= 0)
    close(ctx->epfd);
  if (ctx->sigfd >= 0)
    close(ctx->sigfd);
}

static void ctx_send_phase(wsl_ctx_t *ctx) {
  const wsl_opts_t *o = &ctx->opt;
  uint64_t now = wsl_now();
  ctx->t_warm_start = now;
  ctx->t_measure = now + wsl_secs_ns(o->warmup);
  ctx->t_send_end = ctx->t_measure + wsl_secs_ns(o->duration);
  if (o->rate > 0) {
    /* Stagger the senders evenly over one interval. */
    double interval = (double)o->senders * 1e9 / o->rate;
    for (uint32_t s = 0; s < o->senders; s++)
      ctx->senders[s].next_ns = now + (uint64_t)(interval * s / o->senders);
  }
  if (!o->quiet)
    fprintf(stderr, "wsload: sending for %.1fs (+%.1fs warmup), run id %s\n",
            o->duration, o->warmup, ctx->run_id);
  ctx->phase = WSL_PH_SEND;
  ctx_run(ctx, done_sending, ctx->t_send_end);
  /* Ended early (every sender sent --messages, or nobody is left): what
   * was sent so far is what is measured. */
  now = wsl_now();
  if (now < ctx->t_send_end)
    ctx->t_send_end = now + 1 > ctx->t_measure ? now + 1 : ctx->t_measure;
  ctx->phase = WSL_PH_DRAIN;
  ctx_run(ctx, done_drain, wsl_now() + wsl_secs_ns(o->drain));
}

int main(int argc, char **argv) {
  wsl_ctx_t ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.epfd = ctx.sigfd = -1;
  if (parse_opts(&ctx.opt, argc, argv) < 0) {
    usage(stderr);
    return 2;
  }
  int r = ctx_init(&ctx);
  if (r < 0) {
    ctx_free(&ctx);
    return r == -2 ? 2 : 1;
  }
  const wsl_opts_t *o = &ctx.opt;
  ctx.t_begin = wsl_now();
  ctx.t_progress = ctx.t_begin;

  ctx.phase = WSL_PH_CONNECT;
  ctx_run(&ctx, done_connect, ctx.t_begin + wsl_secs_ns(o->connect_timeout));
  ctx.t_connected = wsl_now();
  /* Connections never started or still pending at the cap count as failed. */
  for (uint32_t i = 0; i < ctx.nconns; i++) {
    wsl_conn_t *c = &ctx.conns[i];
    if (c->state == WSL_ST_IDLE) {
      ctx.connect_errors++;
      c->state = WSL_ST_DONE;
    } else if (c->state == WSL_ST_CONNECTING) {
      conn_fail(&ctx, c, &ctx.connect_errors);
    } else if (c->state == WSL_ST_HANDSHAKE) {
      conn_fail(&ctx, c, &ctx.handshake_errors);
    }
  }
  if (!o->quiet)
    fprintf(stderr, "wsload: %u of %u connected in %.3fs\n", ctx.connected,
            o->connections,
            (double)(ctx.t_connected - ctx.t_first_connect) / 1e9);

  if (o->hold_set) {
    printf("connected %u\n", ctx.connected);
    fflush(stdout);
    ctx.phase = WSL_PH_HOLD;
    ctx_run(&ctx, done_never, wsl_now() + wsl_secs_ns(o->hold));
  } else if (o->senders > 0 && ctx.open > 0) {
    ctx_send_phase(&ctx);
  }

  ctx.phase = WSL_PH_CLOSE;
  for (uint32_t i = 0; i < ctx.nconns; i++)
    conn_close(&ctx, &ctx.conns[i]);
  ctx.interrupted = false;
  ctx_run(&ctx, done_closed, wsl_now() + WSL_CLOSE_WAIT_NS);
  ctx.t_end = wsl_now();
  print_result(&ctx);
  uint32_t connected = ctx.connected;
  ctx_free(&ctx);
  return connected == 0 ? 1 : 0;
}
