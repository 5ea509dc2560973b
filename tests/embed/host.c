/* host.c — a test host that embeds the installed wshub library.
 *
 * Built by tests/embed/run.mjs against the *installed* header and shared
 * library (pkg-config), never against the source tree: it includes only
 * <wshub.h> and <uv.h> besides the C library. It owns one uv_loop_t
 * (uv_loop_init, not the default loop), a 200 ms timer that sends
 * {"type":"tick","n":N} to room "ticks" of server A, a SIGTERM handler, and
 * two independent wshub servers on two loopback ports:
 *
 *   A: refuses the upgrade of /refuse with 403; otherwise joins the client
 *      to "ticks" and sends {"type":"hello","server":"A","id":"<id>"};
 *      answers GET /host with 200 "host route" (everything else → 404).
 *   B: sends {"type":"hello","server":"B","id":"<id>"}; no host routes.
 *
 * Both report their metrics together (one wshub_metrics_group_t); A alone
 * answers GET /metrics, /healthz and /readyz (cfg.metrics, cfg.health).
 *
 * Both answer the text commands all / room / me / count / bye (see
 * host_on_message). Each client owns a heap counter of the messages it sent
 * (wshub_client_set_data), allocated in on_open and freed in on_close, so a
 * leak shows under valgrind and the counter shows in the replies.
 *
 * Ownership: main() owns the loop, the timer, the signal handle and the
 * host_t; each server is owned by wshub until its close callback returns.
 * Output: stderr only ("host: ..." lines the test reads); exit 0 when
 * uv_loop_close() returned 0, 3 when it did not, 1 on a setup failure.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <wshub.h>

/* One embedded server and what the host observed of it. */
typedef struct {
  const char *name; /* "A" or "B" */
  wshub_server_t *server;
  int has_routes; /* answers GET /host and refuses /refuse */
  unsigned long opens;
  unsigned long closes;
  int last_code;
} side_t;

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick;
  uv_signal_t sigterm;
  side_t a;
  side_t b;
  unsigned long ticks;
  wshub_metrics_group_t *group; /* A and B, reported together */
} host_t;

/* Per-connection user data. */
typedef struct {
  unsigned long msgs; /* messages this client sent */
} peer_t;

static int host_is(const char *data, size_t len, const char *word) {
  size_t n = strlen(word);
  return len == n && memcmp(data, word, n) == 0;
}

static int host_target_is(const wshub_request_t *req, const char *path) {
  size_t n = strlen(path);
  if (req->target_len < n || memcmp(req->target, path, n) != 0)
    return 0;
  return req->target_len == n || req->target[n] == '?';
}

static int host_on_open(wshub_client_t *c, const wshub_request_t *req,
                        void *user) {
  side_t *side = user;
  if (side->has_routes && host_target_is(req, "/refuse"))
    return 403;
  peer_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return 503;
  wshub_client_set_data(c, p);
  side->opens++;
  if (side->has_routes && wshub_join(c, "ticks") != 0)
    fprintf(stderr, "host: join failed\n");
  char hello[128];
  int n = snprintf(hello, sizeof(hello),
                   "{\"type\":\"hello\",\"server\":\"%s\",\"id\":\"%s\"}",
                   side->name, wshub_client_id(c));
  wshub_send(c, hello, (size_t)n, 0);
  return 0;
}

static void host_on_message(wshub_client_t *c, const char *data, size_t len,
                            int binary, void *user) {
  side_t *side = user;
  peer_t *p = wshub_client_data(c);
  p->msgs++;
  if (!binary && host_is(data, len, "all")) {
    wshub_send_all(side->server, "from-host-all", 13, 0, NULL);
  } else if (!binary && host_is(data, len, "room")) {
    wshub_send_room(side->server, "ticks", "from-host-room", 14, 0, c);
  } else if (!binary && host_is(data, len, "me")) {
    wshub_send(c, "from-host-me", 12, 0);
  } else if (!binary && host_is(data, len, "count")) {
    char reply[192];
    int n = snprintf(reply, sizeof(reply),
                     "{\"server\":\"%s\",\"clients\":%zu,\"msgs\":%lu,"
                     "\"opens\":%lu,\"closes\":%lu,\"last_code\":%d}",
                     side->name, wshub_client_count(side->server), p->msgs,
                     side->opens, side->closes, side->last_code);
    wshub_send(c, reply, (size_t)n, 0);
  } else if (!binary && host_is(data, len, "bye")) {
    wshub_client_close(c, 4001, "bye");
  } else {
    char reply[96];
    int n = snprintf(reply, sizeof(reply),
                     "{\"type\":\"unknown\",\"server\":\"%s\",\"msgs\":%lu}",
                     side->name, p->msgs);
    wshub_send(c, reply, (size_t)n, 0);
  }
}

static void host_on_close(wshub_client_t *c, int code, const char *reason,
                          void *user) {
  side_t *side = user;
  (void)reason;
  side->closes++;
  side->last_code = code;
  free(wshub_client_data(c));
  wshub_client_set_data(c, NULL);
}

static int host_on_request(wshub_response_t *res, const wshub_request_t *req,
                           void *user) {
  side_t *side = user;
  if (!side->has_routes || req->method != 1 || !host_target_is(req, "/host"))
    return 0; /* not ours: no public dir, so 404 */
  wshub_respond(res, 200, "text/plain", NULL, "host route", 10);
  return 1;
}

static void host_on_tick(uv_timer_t *t) {
  host_t *h = t->data;
  char msg[64];
  int n =
      snprintf(msg, sizeof(msg), "{\"type\":\"tick\",\"n\":%lu}", ++h->ticks);
  wshub_send_room(h->a.server, "ticks", msg, (size_t)n, 0, NULL);
}

/* wshub_close_cb carries no user pointer: report through the server that is
 * still valid during the call. */
static void host_on_server_closed(wshub_server_t *server) {
  fprintf(stderr, "host: server closed port=%d connections=%zu clients=%zu\n",
          wshub_server_port(server), wshub_server_connections(server),
          wshub_client_count(server));
}

static void host_on_sigterm(uv_signal_t *sig, int signum) {
  host_t *h = sig->data;
  (void)signum;
  fprintf(stderr, "host: SIGTERM\n");
  uv_timer_stop(&h->tick);
  uv_close((uv_handle_t *)&h->tick, NULL);
  uv_close((uv_handle_t *)&h->sigterm, NULL);
  wshub_close(h->a.server, host_on_server_closed);
  wshub_close(h->b.server, host_on_server_closed);
}

static int host_start(host_t *h, side_t *side, const char *name,
                      int has_routes) {
  side->name = name;
  side->has_routes = has_routes;
  wshub_config_t cfg;
  wshub_config_init(&cfg);
  cfg.public_dir = NULL;
  cfg.log_level = WSHUB_LOG_WARN;
  cfg.shutdown_timeout_ms = 5000;
  cfg.on_open = host_on_open;
  cfg.on_message = host_on_message;
  cfg.on_close = host_on_close;
  cfg.on_request = has_routes ? host_on_request : NULL;
  cfg.user = side;
  cfg.metrics = cfg.health = has_routes;
  cfg.metrics_group = h->group;
  cfg.metrics_thread = has_routes ? 0 : 1;
  int r = wshub_server_new(&h->loop, &cfg, &side->server);
  if (r == 0)
    r = wshub_listen(side->server, "127.0.0.1", 0, 0);
  if (r != 0)
    fprintf(stderr, "host: server %s: %s\n", name, wshub_strerror(r));
  return r;
}

int main(void) {
  host_t h;
  memset(&h, 0, sizeof(h));
  signal(SIGPIPE, SIG_IGN);
  int r = uv_loop_init(&h.loop);
  if (r != 0) {
    fprintf(stderr, "host: uv_loop_init: %s\n", uv_strerror(r));
    return 1;
  }
  if ((h.group = wshub_metrics_group_new()) == NULL ||
      host_start(&h, &h.a, "A", 1) != 0 || host_start(&h, &h.b, "B", 0) != 0)
    return 1;

  uv_timer_init(&h.loop, &h.tick);
  h.tick.data = &h;
  uv_timer_start(&h.tick, host_on_tick, 200, 200);
  uv_signal_init(&h.loop, &h.sigterm);
  h.sigterm.data = &h;
  uv_signal_start(&h.sigterm, host_on_sigterm, SIGTERM);

  fprintf(stderr, "host: A=%d B=%d\n", wshub_server_port(h.a.server),
          wshub_server_port(h.b.server));

  uv_run(&h.loop, UV_RUN_DEFAULT);
  fprintf(stderr,
          "host: A opens=%lu closes=%lu last_code=%d B opens=%lu closes=%lu "
          "last_code=%d ticks=%lu\n",
          h.a.opens, h.a.closes, h.a.last_code, h.b.opens, h.b.closes,
          h.b.last_code, h.ticks);
  r = uv_loop_close(&h.loop);
  wshub_metrics_group_free(h.group);
  fprintf(stderr, "host: uv_loop_close=%d\n", r);
  return r == 0 ? 0 : 3;
}
