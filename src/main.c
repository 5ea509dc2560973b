/* main.c — the standalone wshub program: command-line options, signals,
 * and the loop. Everything else is the library (wshub.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "wshub.h"

#ifndef WSHUB_SOURCE_PUBLIC
#define WSHUB_SOURCE_PUBLIC "public"
#endif
#ifndef WSHUB_DATA_PUBLIC
#define WSHUB_DATA_PUBLIC "/usr/local/share/wshub/public"
#endif

#define MAX_LIST 16

typedef struct {
  wshub_config_t cfg;
  wshub_chat_config_t chat_cfg;
  const char *host;
  int port;
  int backlog;
  const char *ws_paths[MAX_LIST];
  const char *protocols[MAX_LIST];
  int max_message_set;
  uv_signal_t sigint, sigterm;
  wshub_server_t *server;
  int stopping;
} main_t;

static void usage(FILE *f) {
  fprintf(
      f,
      "Usage: wshub [options]\n"
      "\n"
      "A real-time chat backend: serves the chat page from a public directory\n"
      "and its WebSocket endpoint on one port.\n"
      "\n"
      "Listening:\n"
      "  --host ADDR              address to listen on (default :: and "
      "0.0.0.0)\n"
      "  --port N                 TCP port, 0 picks a free one (default 3000)\n"
      "  --backlog N              listen(2) backlog (default 511)\n"
      "  --public DIR             static files root (default: the source "
      "tree's\n"
      "                           public/, else " WSHUB_DATA_PUBLIC ")\n"
      "\n"
      "HTTP limits (sizes accept K and M suffixes, times are seconds):\n"
      "  --max-header-bytes N     header section limit, else 431 (default "
      "16K)\n"
      "  --max-headers N          header field count limit, else 431 (default "
      "100)\n"
      "  --max-body N             request body limit, else 413 (default 1M)\n"
      "  --header-timeout S       request head must arrive within S (default "
      "10)\n"
      "  --keepalive-timeout S    idle keep-alive connections close (default "
      "15)\n"
      "\n"
      "WebSocket:\n"
      "  --ws-path PATH           accept Upgrades only on PATH (repeatable;\n"
      "                           default: every path)\n"
      "  --protocol NAME          a subprotocol to accept (repeatable)\n"
      "  --max-message N          message size limit, else close 1009\n"
      "                           (default 1M; 64M with --echo)\n"
      "  --ping-interval S        ping idle clients every S, drop those that "
      "miss\n"
      "                           a pong; 0 disables (default 30)\n"
      "  --close-timeout S        wait S for the peer's close frame (default "
      "5)\n"
      "  --max-backlog N          outbound bytes queued per client before it "
      "is\n"
      "                           dropped as too slow (default 8M)\n"
      "  --echo                   echo every message back instead of chatting\n"
      "                           (for the Autobahn TestSuite)\n"
      "\n"
      "Chat:\n"
      "  --max-text N             longest message text in bytes (default "
      "4000)\n"
      "  --history N              messages kept per room for resume (default "
      "100)\n"
      "  --presence-limit N       rooms larger than N get no join/leave/nick\n"
      "                           notices, and member lists of N (default "
      "100)\n"
      "\n"
      "Process:\n"
      "  --shutdown-timeout S     on SIGINT/SIGTERM, wait S for connections "
      "to\n"
      "                           finish before cutting them (default 10)\n"
      "  --log-level LEVEL        error, warn, info or debug (default info)\n"
      "  -h, --help               show this help and exit\n"
      "  -V, --version            show the version and exit\n");
}

static int bad(const char *opt, const char *val, const char *why) {
  fprintf(stderr, "wshub: invalid value '%s' for --%s: %s\n", val, opt, why);
  fprintf(stderr, "Try 'wshub --help'.\n");
  return 2;
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || errno != 0 || s[0] == '-')
    return -1;
  unsigned long long mul = 1;
  if (*end == 'k' || *end == 'K')
    mul = 1024, end++;
  else if (*end == 'm' || *end == 'M')
    mul = 1024 * 1024, end++;
  else if (*end == 'g' || *end == 'G')
    mul = 1024ull * 1024 * 1024, end++;
  if (*end != '\0' || v > SIZE_MAX / mul)
    return -1;
  *out = (size_t)(v * mul);
  return 0;
}

static int parse_seconds(const char *s, uint64_t *ms) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || errno != 0 || v < 0 || v > 86400.0 * 365)
    return -1;
  *ms = (uint64_t)(v * 1000.0 + 0.5);
  return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
    return -1;
  *out = (int)v;
  return 0;
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

enum {
  OPT_HOST = 256,
  OPT_PORT,
  OPT_BACKLOG,
  OPT_PUBLIC,
  OPT_MAX_HEADER_BYTES,
  OPT_MAX_HEADERS,
  OPT_MAX_BODY,
  OPT_HEADER_TIMEOUT,
  OPT_KEEPALIVE_TIMEOUT,
  OPT_WS_PATH,
  OPT_PROTOCOL,
  OPT_MAX_MESSAGE,
  OPT_PING_INTERVAL,
  OPT_CLOSE_TIMEOUT,
  OPT_MAX_BACKLOG,
  OPT_ECHO,
  OPT_SHUTDOWN_TIMEOUT,
  OPT_LOG_LEVEL,
  OPT_MAX_TEXT,
  OPT_HISTORY,
  OPT_PRESENCE_LIMIT,
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(main_t *m, int argc, char **argv) {
  static const struct option opts[] = {
      {"host", required_argument, NULL, OPT_HOST},
      {"port", required_argument, NULL, OPT_PORT},
      {"backlog", required_argument, NULL, OPT_BACKLOG},
      {"public", required_argument, NULL, OPT_PUBLIC},
      {"max-header-bytes", required_argument, NULL, OPT_MAX_HEADER_BYTES},
      {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
      {"max-body", required_argument, NULL, OPT_MAX_BODY},
      {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
      {"keepalive-timeout", required_argument, NULL, OPT_KEEPALIVE_TIMEOUT},
      {"ws-path", required_argument, NULL, OPT_WS_PATH},
      {"protocol", required_argument, NULL, OPT_PROTOCOL},
      {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
      {"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
      {"close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT},
      {"max-backlog", required_argument, NULL, OPT_MAX_BACKLOG},
      {"echo", no_argument, NULL, OPT_ECHO},
      {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
      {"max-text", required_argument, NULL, OPT_MAX_TEXT},
      {"history", required_argument, NULL, OPT_HISTORY},
      {"presence-limit", required_argument, NULL, OPT_PRESENCE_LIMIT},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  wshub_config_t *cfg = &m->cfg;
  int ch;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
    const char *name = NULL;
    for (const struct option *o = opts; o->name; o++)
      if (o->val == ch)
        name = o->name;
    switch (ch) {
    case 'h':
      usage(stdout);
      return 0;
    case 'V':
      printf("wshub " WSHUB_VERSION "\n");
      return 0;
    case OPT_HOST:
      m->host = optarg;
      break;
    case OPT_PORT:
      if (parse_int(optarg, 0, 65535, &m->port) != 0)
        return bad(name, optarg, "expected a port number 0-65535");
      break;
    case OPT_BACKLOG:
      if (parse_int(optarg, 1, 65535, &m->backlog) != 0)
        return bad(name, optarg, "expected 1-65535");
      break;
    case OPT_PUBLIC:
      if (!is_dir(optarg))
        return bad(name, optarg, "not a directory");
      cfg->public_dir = optarg;
      break;
    case OPT_MAX_HEADER_BYTES:
    case OPT_MAX_HEADERS:
    case OPT_MAX_BODY:
    case OPT_MAX_MESSAGE:
    case OPT_MAX_BACKLOG: {
      size_t v;
      if (parse_size(optarg, &v) != 0 || v == 0)
        return bad(name, optarg, "expected a positive size");
      if (ch == OPT_MAX_HEADER_BYTES)
        cfg->max_header_bytes = v;
      else if (ch == OPT_MAX_HEADERS)
        cfg->max_headers = v;
      else if (ch == OPT_MAX_BODY)
        cfg->max_body = v;
      else if (ch == OPT_MAX_MESSAGE)
        cfg->max_message = v, m->max_message_set = 1;
      else
        cfg->max_backlog = v;
      break;
    }
    case OPT_HEADER_TIMEOUT:
    case OPT_KEEPALIVE_TIMEOUT:
    case OPT_PING_INTERVAL:
    case OPT_CLOSE_TIMEOUT:
    case OPT_SHUTDOWN_TIMEOUT: {
      uint64_t ms;
      if (parse_seconds(optarg, &ms) != 0)
        return bad(name, optarg, "expected seconds");
      if (ms == 0 && ch != OPT_PING_INTERVAL)
        return bad(name, optarg, "must be more than 0");
      if (ch == OPT_HEADER_TIMEOUT)
        cfg->header_timeout_ms = ms;
      else if (ch == OPT_KEEPALIVE_TIMEOUT)
        cfg->keepalive_timeout_ms = ms;
      else if (ch == OPT_PING_INTERVAL)
        cfg->ping_interval_ms = ms;
      else if (ch == OPT_CLOSE_TIMEOUT)
        cfg->close_timeout_ms = ms;
      else
        cfg->shutdown_timeout_ms = ms;
      break;
    }
    case OPT_WS_PATH:
      if (optarg[0] != '/')
        return bad(name, optarg, "must start with /");
      if (cfg->ws_npaths == MAX_LIST)
        return bad(name, optarg, "too many paths");
      m->ws_paths[cfg->ws_npaths++] = optarg;
      break;
    case OPT_PROTOCOL:
      if (cfg->nprotocols == MAX_LIST)
        return bad(name, optarg, "too many protocols");
      m->protocols[cfg->nprotocols++] = optarg;
      break;
    case OPT_ECHO:
      cfg->echo = 1;
      break;
    case OPT_MAX_TEXT:
    case OPT_HISTORY:
    case OPT_PRESENCE_LIMIT: {
      size_t v;
      if (parse_size(optarg, &v) != 0 || (v == 0 && ch == OPT_MAX_TEXT) ||
          v > 1000000000)
        return bad(name, optarg,
                   ch == OPT_MAX_TEXT ? "expected a positive size"
                                      : "expected a count");
      if (ch == OPT_MAX_TEXT)
        m->chat_cfg.max_text = v;
      else if (ch == OPT_HISTORY)
        m->chat_cfg.history = v;
      else
        m->chat_cfg.presence_limit = v;
      break;
    }
    case OPT_LOG_LEVEL: {
      static const char *const levels[] = {"error", "warn", "info", "debug"};
      int found = -1;
      for (int i = 0; i < 4; i++)
        if (strcmp(optarg, levels[i]) == 0)
          found = i;
      if (found < 0)
        return bad(name, optarg, "expected error, warn, info or debug");
      cfg->log_level = (wshub_log_level_t)found;
      break;
    }
    case ':':
      fprintf(stderr, "wshub: option '%s' needs a value\n", argv[optind - 1]);
      fprintf(stderr, "Try 'wshub --help'.\n");
      return 2;
    default:
      fprintf(stderr, "wshub: unknown option '%s'\n", argv[optind - 1]);
      fprintf(stderr, "Try 'wshub --help'.\n");
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "wshub: unexpected argument '%s'\n", argv[optind]);
    fprintf(stderr, "Try 'wshub --help'.\n");
    return 2;
  }
  if (cfg->echo && !m->max_message_set)
    cfg->max_message = 64 * 1024 * 1024;
  if (cfg->public_dir == NULL)
    cfg->public_dir =
        is_dir(WSHUB_SOURCE_PUBLIC) ? WSHUB_SOURCE_PUBLIC : WSHUB_DATA_PUBLIC;
  cfg->ws_paths = m->ws_paths;
  cfg->protocols = m->protocols;
  return -1;
}

/* Raises the open-file limit to its hard maximum; returns the new limit. */
static unsigned long raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return (unsigned long)rl.rlim_cur;
}

static void on_server_closed(wshub_server_t *server) {
  (void)server;
}

static void on_signal(uv_signal_t *sig, int signum) {
  main_t *m = sig->data;
  if (m->stopping) {
    fprintf(stderr, "wshub: second signal, exiting now\n");
    _exit(1);
  }
  m->stopping = 1;
  fprintf(stderr, "wshub: %s received, shutting down\n",
          signum == SIGINT ? "SIGINT" : "SIGTERM");
  /* The handlers stay, unreferenced, to catch a second signal. */
  uv_unref((uv_handle_t *)&m->sigint);
  uv_unref((uv_handle_t *)&m->sigterm);
  wshub_close(m->server, on_server_closed);
}

int main(int argc, char **argv) {
  main_t m;
  memset(&m, 0, sizeof(m));
  wshub_config_init(&m.cfg);
  wshub_chat_config_init(&m.chat_cfg);
  m.cfg.log_level = WSHUB_LOG_INFO;
  m.port = 3000;
  int rc = parse_args(&m, argc, argv);
  if (rc >= 0)
    return rc;
  signal(SIGPIPE, SIG_IGN);
  unsigned long nofile = raise_nofile();

  uv_loop_t *loop = uv_default_loop();
  wshub_chat_t *chat = NULL;
  if (!m.cfg.echo) {
    chat = wshub_chat_new(&m.chat_cfg);
    if (chat == NULL) {
      fprintf(stderr, "wshub: out of memory\n");
      return 1;
    }
    wshub_chat_install(chat, &m.cfg);
  }
  int r = wshub_server_new(loop, &m.cfg, &m.server);
  if (r != 0) {
    wshub_chat_free(chat);
    fprintf(stderr, "wshub: public directory '%s': %s\n", m.cfg.public_dir,
            wshub_strerror(r));
    return 1;
  }
  const char *host = m.host ? m.host : "::";
  r = wshub_listen(m.server, host, m.port, m.backlog);
  if (r != 0 && m.host == NULL && r != UV_EADDRINUSE) {
    host = "0.0.0.0"; /* no IPv6 on this machine */
    r = wshub_listen(m.server, host, m.port, m.backlog);
  }
  if (r != 0) {
    fprintf(stderr, "wshub: cannot listen on %s port %d: %s\n", host, m.port,
            r == UV_EADDRINUSE ? "address already in use" : wshub_strerror(r));
    wshub_close(m.server, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    wshub_chat_free(chat);
    return 1;
  }
  int port = wshub_server_port(m.server);
  int v6 = strchr(host, ':') != NULL;
  fprintf(stderr,
          "wshub " WSHUB_VERSION
          ": listening on http://%s%s%s:%d (public %s%s)\n",
          v6 ? "[" : "", host, v6 ? "]" : "", port, m.cfg.public_dir,
          m.cfg.echo ? ", echo mode" : "");
  if (nofile > 0)
    fprintf(stderr,
            "wshub: open-file limit %lu: room for about %lu connections\n",
            nofile, nofile > 32 ? nofile - 32 : 0);
  if (strcmp(host, "::") == 0 || strcmp(host, "0.0.0.0") == 0)
    fprintf(stderr, "wshub: open http://localhost:%d\n", port);

  uv_signal_init(loop, &m.sigint);
  uv_signal_init(loop, &m.sigterm);
  m.sigint.data = m.sigterm.data = &m;
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);

  uv_run(loop, UV_RUN_DEFAULT);

  uv_close((uv_handle_t *)&m.sigint, NULL);
  uv_close((uv_handle_t *)&m.sigterm, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  wshub_chat_free(chat);
  r = uv_loop_close(loop);
  if (r != 0)
    fprintf(stderr, "wshub: loop not empty at exit: %s\n", wshub_strerror(r));
  fprintf(stderr, "wshub: stopped\n");
  return 0;
}
