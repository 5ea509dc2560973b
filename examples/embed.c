/* embed.c — wshub inside a host's own libuv loop.
 *
 * The host owns the loop, a timer that broadcasts a clock tick to the room
 * "clock" every second, its own HTTP route (GET /time), and the signal
 * handling. wshub serves the WebSocket clients and the static files.
 *
 *   build/embed [port] [public-dir]     then: ws://127.0.0.1:3001/
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wshub.h>

typedef struct {
  uv_loop_t *loop;
  uv_timer_t tick;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  wshub_server_t *server;
  unsigned long ticks;
} host_t;

static int host_on_open(wshub_client_t *c, const wshub_request_t *req,
                        void *user) {
  (void)user;
  /* The host decides who may connect: refuse one path as an example. */
  if (req->target_len >= 10 && memcmp(req->target, "/forbidden", 10) == 0)
    return 403;
  wshub_join(c, "clock");
  char hello[96];
  int n = snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"id\":\"%s\"}",
                   wshub_client_id(c));
  wshub_send(c, hello, (size_t)n, 0);
  return 0;
}

static void host_on_message(wshub_client_t *c, const char *data, size_t len,
                            int binary, void *user) {
  (void)user;
  /* Relay to everyone else in the room, as the client sent it. */
  wshub_send_room(wshub_client_server(c), "clock", data, len, binary, c);
}

static int host_on_request(wshub_response_t *res, const wshub_request_t *req,
                           void *user) {
  host_t *h = user;
  if (req->target_len != 5 || memcmp(req->target, "/time", 5) != 0)
    return 0; /* not ours: static files */
  char body[128];
  int n = snprintf(
      body, sizeof(body), "{\"now\":%lld,\"ticks\":%lu,\"clients\":%zu}\n",
      (long long)time(NULL), h->ticks, wshub_client_count(h->server));
  wshub_respond(res, 200, "application/json", NULL, body, (size_t)n);
  return 1;
}

static void host_on_tick(uv_timer_t *t) {
  host_t *h = t->data;
  char msg[96];
  int n =
      snprintf(msg, sizeof(msg), "{\"type\":\"tick\",\"n\":%lu,\"now\":%lld}",
               ++h->ticks, (long long)time(NULL));
  wshub_send_room(h->server, "clock", msg, (size_t)n, 0, NULL);
}

static void host_on_closed(wshub_server_t *server) {
  (void)server;
  fprintf(stderr, "embed: server closed\n");
}

static void host_on_signal(uv_signal_t *sig, int signum) {
  host_t *h = sig->data;
  (void)signum;
  uv_timer_stop(&h->tick);
  uv_close((uv_handle_t *)&h->tick, NULL);
  uv_close((uv_handle_t *)&h->sigint, NULL);
  uv_close((uv_handle_t *)&h->sigterm, NULL);
  wshub_close(h->server, host_on_closed);
}

int main(int argc, char **argv) {
  host_t h;
  memset(&h, 0, sizeof(h));
  int port = argc > 1 ? atoi(argv[1]) : 3001;
  h.loop = uv_default_loop();

  wshub_config_t cfg;
  wshub_config_init(&cfg);
  cfg.public_dir = argc > 2 ? argv[2] : NULL;
  cfg.on_open = host_on_open;
  cfg.on_message = host_on_message;
  cfg.on_request = host_on_request;
  cfg.user = &h;
  int r = wshub_server_new(h.loop, &cfg, &h.server);
  if (r == 0)
    r = wshub_listen(h.server, "127.0.0.1", port, 0);
  if (r != 0) {
    fprintf(stderr, "embed: %s\n", wshub_strerror(r));
    return 1;
  }
  fprintf(stderr, "embed: listening on http://127.0.0.1:%d\n",
          wshub_server_port(h.server));

  uv_timer_init(h.loop, &h.tick);
  h.tick.data = &h;
  uv_timer_start(&h.tick, host_on_tick, 1000, 1000);
  uv_signal_init(h.loop, &h.sigint);
  uv_signal_init(h.loop, &h.sigterm);
  h.sigint.data = h.sigterm.data = &h;
  uv_signal_start(&h.sigint, host_on_signal, SIGINT);
  uv_signal_start(&h.sigterm, host_on_signal, SIGTERM);

  uv_run(h.loop, UV_RUN_DEFAULT);
  r = uv_loop_close(h.loop);
  fprintf(stderr, "embed: uv_loop_close: %s\n", r == 0 ? "ok" : uv_strerror(r));
  return r == 0 ? 0 : 1;
}
