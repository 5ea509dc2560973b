/* main.c — the standalone wshub program: command-line options, signals,
 * and the loop. Everything else is the library (wshub.h). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "cluster.h"
#include "config.h"
#include "server.h"
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
  const char *origins[MAX_LIST];
  int max_message_set;
  unsigned threads;
  uv_signal_t sigint, sigterm;
  uv_async_t done; /* a worker finished */
  uv_timer_t trim; /* gives freed heap back to the system */
  unsigned finished;
  struct worker_s *workers;
  wshub_chat_t *chat;
  int stopping;
  config_args_t args; /* the options from the file, environment, argv */
  /* Operations (metrics, health, logs). */
  int metrics_port;             /* 0: on the main port */
  wshub_metrics_group_t *group; /* every thread's server, for scrapes */
  /* TLS: --tls-cert, --tls-key, --tls-port (-1: --port itself speaks TLS);
   * the context all threads share; SIGHUP loads the files again. */
  const char *tls_cert, *tls_key;
  int tls_port;
  wshub_tls_t *tls;
  uv_signal_t sighup;
  unsigned tls_waiting; /* threads yet to take a reloaded context */
} main_t;

/* Where the option being parsed came from, for bad()'s message. */
static const config_source_t *main_source;

/* The program's own log lines, in the format of the library's. */
static void say(const main_t *m, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const main_t *m, const char *level, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  char ts[WSHUB_LOG_TIME_BYTES];
  wshub_log_time(ts);
  json_t *o = m->cfg.log_json ? json_pack("{s:s, s:s, s:s}", "ts", ts, "level",
                                          level, "msg", msg)
                              : NULL;
  char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  if (line != NULL)
    fprintf(stderr, "%s\n", line);
  else /* text, as "wshub: msg" (the banner names itself) */
    fprintf(stderr, "%s%s\n", strncmp(msg, "wshub ", 6) ? "wshub: " : "", msg);
  free(line);
  json_decref(o);
}

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
      "  --threads N              event loops, one per thread, sharing the "
      "port\n"
      "                           and the rooms (default: one per core)\n"
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
      "  --max-connections N      refuse (503) connections past N (default:\n"
      "                           what the open-file limit allows; 0: none)\n"
      "  --max-per-ip N           refuse (503) more than N connections from\n"
      "                           one address (default 1000; 0: no limit)\n"
      "  --allow-origin ORIGIN    browsers may open WebSockets from ORIGIN\n"
      "                           (repeatable; * for any; default: same host\n"
      "                           and clients that send no Origin; else 403)\n"
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
      "Compression (permessage-deflate, RFC 7692):\n"
      "  --deflate on|off         accept clients' offers (default on)\n"
      "  --deflate-threshold N    send messages shorter than N uncompressed\n"
      "                           (default 64)\n"
      "  --deflate-level N        zlib level 1-9 (default 6)\n"
      "  --deflate-client-window BITS\n"
      "                           0: clients compress each message on its "
      "own\n"
      "                           (default); 8-15: they may keep a window of\n"
      "                           2^BITS bytes, which the server keeps for "
      "each\n"
      "\n"
      "Chat:\n"
      "  --max-text N             longest message text in bytes (default "
      "4000)\n"
      "  --history N              messages kept per room for resume (default "
      "100)\n"
      "  --msg-rate N             chat messages per second per client "
      "(default\n"
      "                           100; 0: no limit); over it: rate_limited,\n"
      "                           persistent flooding: close 1008\n"
      "  --msg-burst N            token bucket size (default 2 x msg-rate)\n"
      "  --presence-limit N       rooms larger than N get no join/leave/nick\n"
      "                           notices, and member lists of N (default "
      "100)\n"
      "  --session-timeout S      an HTTP (SSE / polling) session with no "
      "open\n"
      "                           request ends after S (default 60)\n"
      "  --redis URL              share rooms with the other nodes using the\n"
      "                           Redis at redis://host[:port][/db]\n"
      "\n"
      "TLS (https and wss; SIGHUP reloads the certificate):\n"
      "  --tls-cert FILE          PEM certificate (chain) file\n"
      "  --tls-key FILE           its PEM private key (unencrypted)\n"
      "  --tls-port N             speak TLS on port N, beside the plain "
      "--port;\n"
      "                           without it, --port itself speaks TLS\n"
      "\n"
      "Process:\n"
      "  --config FILE            read options from FILE, a JSON object such "
      "as\n"
      "                           {\"port\": 8080, \"allow-origin\": "
      "[\"https://a\"]}\n"
      "  --shutdown-timeout S     on SIGINT/SIGTERM, wait S for connections "
      "to\n"
      "                           finish before cutting them (default 10)\n"
      "  --log-level LEVEL        error, warn, info or debug (default info)\n"
      "\n"
      "Operations:\n"
      "  --metrics on|off         GET /metrics, Prometheus text format "
      "(default on)\n"
      "  --health on|off          GET /healthz and GET /readyz (default on)\n"
      "  --metrics-port N         serve those on their own port N (same "
      "host),\n"
      "                           and not on the main one (default 0: main "
      "port)\n"
      "  --log-format text|json   log lines as text or JSON objects (default "
      "text)\n"
      "  --access-log on|off      one info line per HTTP response (default "
      "off)\n"
      "  -h, --help               show this help and exit\n"
      "  -V, --version            show the version and exit\n"
      "\n"
      "Every option but --help and --version can be set in the --config file\n"
      "or as WSHUB_<NAME> in the environment (WSHUB_LOG_LEVEL=debug; lists\n"
      "comma-separated): the command line wins over the environment, which\n"
      "wins over the file. WSHUB_CONFIG names the file when --config does "
      "not.\n");
}

static int bad(const char *opt, const char *val, const char *why) {
  const config_source_t *src = main_source;
  if (src != NULL && src->from == CONFIG_FROM_FILE)
    fprintf(stderr, "wshub: %s: invalid value '%s' for \"%s\": %s\n",
            src->label, val, opt, why);
  else if (src != NULL && src->from == CONFIG_FROM_ENV)
    fprintf(stderr, "wshub: invalid value '%s' for %s: %s\n", val, src->label,
            why);
  else
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
  OPT_CONFIG = 256,
  OPT_HOST,
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
  OPT_SESSION_TIMEOUT,
  OPT_THREADS,
  OPT_ALLOW_ORIGIN,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_PER_IP,
  OPT_MSG_RATE,
  OPT_MSG_BURST,
  OPT_DEFLATE,
  OPT_DEFLATE_THRESHOLD,
  OPT_DEFLATE_LEVEL,
  OPT_DEFLATE_CLIENT_WINDOW,
  OPT_REDIS,
  OPT_METRICS,
  OPT_HEALTH,
  OPT_METRICS_PORT,
  OPT_LOG_FORMAT,
  OPT_ACCESS_LOG,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_TLS_PORT,
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(main_t *m, int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, OPT_CONFIG},
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
      {"session-timeout", required_argument, NULL, OPT_SESSION_TIMEOUT},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"allow-origin", required_argument, NULL, OPT_ALLOW_ORIGIN},
      {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
      {"max-per-ip", required_argument, NULL, OPT_MAX_PER_IP},
      {"msg-rate", required_argument, NULL, OPT_MSG_RATE},
      {"msg-burst", required_argument, NULL, OPT_MSG_BURST},
      {"deflate", required_argument, NULL, OPT_DEFLATE},
      {"deflate-threshold", required_argument, NULL, OPT_DEFLATE_THRESHOLD},
      {"deflate-level", required_argument, NULL, OPT_DEFLATE_LEVEL},
      {"deflate-client-window", required_argument, NULL,
       OPT_DEFLATE_CLIENT_WINDOW},
      {"redis", required_argument, NULL, OPT_REDIS},
      {"metrics", required_argument, NULL, OPT_METRICS},
      {"health", required_argument, NULL, OPT_HEALTH},
      {"metrics-port", required_argument, NULL, OPT_METRICS_PORT},
      {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
      {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
      {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
      {"tls-key", required_argument, NULL, OPT_TLS_KEY},
      {"tls-port", required_argument, NULL, OPT_TLS_PORT},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  /* The configuration file's and the environment's settings come first,
   * as --name=value arguments for this same loop (config.h). Options that
   * may be given several times are listed here. */
  static const char *const repeatable[] = {"ws-path", "protocol",
                                           "allow-origin", NULL};
  static const char *const args_only[] = {"help", "version", NULL};
  static const config_spec_t spec = {opts,      ":hV",    repeatable,
                                     args_only, "config", "WSHUB_"};
  char err[1024];
  if (config_args_build(&spec, argc, argv, environ, &m->args, err,
                        sizeof(err)) != 0) {
    fprintf(stderr, "wshub: %s\nTry 'wshub --help'.\n", err);
    return 2;
  }
  argc = m->args.argc;
  argv = m->args.argv;
  wshub_config_t *cfg = &m->cfg;
  int ch;
  opterr = 0;
  optind = 0;
  while ((ch = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
    main_source =
        optind >= 1 && optind <= argc ? &m->args.src[optind - 1] : NULL;
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
    case OPT_CONFIG: /* read by config_args_build */
      break;
    case OPT_HOST:
      m->host = optarg;
      break;
    case OPT_PORT:
      if (parse_int(optarg, 0, 65535, &m->port) != 0)
        return bad(name, optarg, "expected a port number 0-65535");
      break;
    case OPT_THREADS: {
      int n;
      if (parse_int(optarg, 0, 256, &n) != 0)
        return bad(name, optarg, "expected 0-256 (0: one per core)");
      m->threads = (unsigned)n;
      break;
    }
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
    case OPT_SESSION_TIMEOUT:
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
      else if (ch == OPT_SESSION_TIMEOUT)
        m->chat_cfg.session_timeout_ms = ms;
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
    case OPT_DEFLATE:
      if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
        return bad(name, optarg, "expected on or off");
      cfg->deflate = strcmp(optarg, "on") == 0;
      break;
    case OPT_DEFLATE_THRESHOLD:
      if (parse_size(optarg, &cfg->deflate_threshold) != 0)
        return bad(name, optarg, "expected a size");
      break;
    case OPT_DEFLATE_LEVEL:
      if (parse_int(optarg, 1, 9, &cfg->deflate_level) != 0)
        return bad(name, optarg, "expected 1-9");
      break;
    case OPT_TLS_CERT:
      m->tls_cert = optarg;
      break;
    case OPT_TLS_KEY:
      m->tls_key = optarg;
      break;
    case OPT_TLS_PORT:
      if (parse_int(optarg, 0, 65535, &m->tls_port) != 0)
        return bad(name, optarg, "expected a port number 0-65535");
      break;
    case OPT_REDIS: {
      char host[256];
      int port, db;
      if (wshub_cluster_parse_url(optarg, host, sizeof(host), &port, &db) != 0)
        return bad(name, optarg, "expected redis://host[:port][/db]");
      m->chat_cfg.redis_url = optarg;
      break;
    }
    case OPT_METRICS:
    case OPT_HEALTH:
    case OPT_ACCESS_LOG: {
      int on = strcmp(optarg, "on") == 0;
      if (!on && strcmp(optarg, "off") != 0)
        return bad(name, optarg, "expected on or off");
      if (ch == OPT_METRICS)
        cfg->metrics = on;
      else if (ch == OPT_HEALTH)
        cfg->health = on;
      else
        cfg->access_log = on;
      break;
    }
    case OPT_METRICS_PORT:
      if (parse_int(optarg, 0, 65535, &m->metrics_port) != 0)
        return bad(name, optarg, "expected a port number (0: the main port)");
      break;
    case OPT_LOG_FORMAT:
      if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0)
        return bad(name, optarg, "expected text or json");
      cfg->log_json = strcmp(optarg, "json") == 0;
      break;
    case OPT_DEFLATE_CLIENT_WINDOW: {
      int bits;
      if (parse_int(optarg, 0, 15, &bits) != 0 || (bits > 0 && bits < 8))
        return bad(name, optarg, "expected 0 or 8-15");
      cfg->deflate_client_window = (unsigned)bits;
      break;
    }
    case OPT_MAX_CONNECTIONS:
    case OPT_MAX_PER_IP: {
      size_t v;
      if (parse_size(optarg, &v) != 0)
        return bad(name, optarg, "expected a count (0: no limit)");
      if (ch == OPT_MAX_CONNECTIONS)
        cfg->max_connections = v;
      else
        cfg->max_per_ip = v;
      break;
    }
    case OPT_MSG_RATE:
    case OPT_MSG_BURST: {
      char *end;
      double v = strtod(optarg, &end);
      if (end == optarg || *end != '\0' || !(v >= 0) || v > 1e9)
        return bad(name, optarg, "expected a number >= 0");
      if (ch == OPT_MSG_RATE)
        m->chat_cfg.rate = v;
      else
        m->chat_cfg.burst = v;
      break;
    }
    case OPT_ALLOW_ORIGIN:
      if (strcmp(optarg, "*") != 0 && strstr(optarg, "://") == NULL)
        return bad(name, optarg,
                   "expected an origin like https://host[:port] "
                   "or *");
      if (cfg->nallow_origins == MAX_LIST)
        return bad(name, optarg, "too many origins");
      m->origins[cfg->nallow_origins++] = optarg;
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
  main_source = NULL;
  if (optind < argc) {
    fprintf(stderr, "wshub: unexpected argument '%s'\n", argv[optind]);
    fprintf(stderr, "Try 'wshub --help'.\n");
    return 2;
  }
  if (m->args.file != NULL)
    say(m, "info", "options read from %s", m->args.file);
  if (m->metrics_port != 0 && m->metrics_port == m->port) {
    char v[16];
    snprintf(v, sizeof(v), "%d", m->metrics_port);
    return bad("metrics-port", v, "must differ from --port");
  }
  if ((m->tls_cert == NULL) != (m->tls_key == NULL) ||
      (m->tls_port >= 0 && m->tls_cert == NULL)) {
    fprintf(stderr, "wshub: %s\n",
            m->tls_cert == NULL && m->tls_key == NULL
                ? "--tls-port needs --tls-cert and --tls-key"
                : "--tls-cert and --tls-key go together");
    fprintf(stderr, "Try 'wshub --help'.\n");
    return 2;
  }
  if (m->tls_port > 0 && m->tls_port == m->port) {
    char v[16];
    snprintf(v, sizeof(v), "%d", m->tls_port);
    return bad("tls-port", v, "must differ from --port");
  }
  if (cfg->echo && !m->max_message_set)
    cfg->max_message = 64 * 1024 * 1024;
  if (cfg->public_dir == NULL)
    cfg->public_dir =
        is_dir(WSHUB_SOURCE_PUBLIC) ? WSHUB_SOURCE_PUBLIC : WSHUB_DATA_PUBLIC;
  cfg->ws_paths = m->ws_paths;
  cfg->protocols = m->protocols;
  cfg->allow_origins = m->origins;
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

/* One server, one loop, one thread. */
typedef struct worker_s {
  main_t *m;
  unsigned index;
  uv_os_sock_t fd;     /* plain listener, -1: none */
  uv_os_sock_t ops_fd; /* --metrics-port */
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t stop;
  wshub_server_t *server;
  int detached; /* the chat let go of this thread's loop */
  /* TLS: the listener (-1: none), and a reloaded context handed over by
   * the main thread (taken with an atomic exchange). */
  uv_os_sock_t tls_fd;
  uv_async_t reload;
  wshub_tls_t *tls_next;
} worker_t;

static void worker_detach(worker_t *w) {
  if (w->m->chat != NULL && !w->detached)
    wshub_chat_detach(w->m->chat, w->index);
  w->detached = 1;
}

/* The server is about to be freed: the chat stops using it first. */
static void worker_on_closed(wshub_server_t *s) {
  worker_detach(wshub_server_loop(s)->data);
}

/* A certificate reload reached this thread: new connections use it. */
static void worker_on_reload(uv_async_t *a) {
  worker_t *w = a->data;
  wshub_tls_t *tls = __atomic_exchange_n(&w->tls_next, NULL, __ATOMIC_ACQ_REL);
  if (tls == NULL)
    return;
  int r = wshub_server_set_tls(w->server, tls);
  wshub_tls_free(tls);
  if (r != 0)
    fprintf(stderr, "wshub: thread %u: cannot take the new certificate: %s\n",
            w->index, wshub_strerror(r));
  else if (__atomic_sub_fetch(&w->m->tls_waiting, 1, __ATOMIC_ACQ_REL) == 0)
    fprintf(stderr, "wshub: SIGHUP: new certificate in use by every thread\n");
}

static void worker_on_stop(uv_async_t *a) {
  worker_t *w = a->data;
  uv_close((uv_handle_t *)&w->stop, NULL);
  if (w->m->tls != NULL) {
    uv_close((uv_handle_t *)&w->reload, NULL);
    wshub_tls_free(__atomic_exchange_n(&w->tls_next, NULL, __ATOMIC_ACQ_REL));
  }
  /* the loop runs out; worker_main goes on */
  wshub_close(w->server, worker_on_closed);
}

static void worker_main(void *arg) {
  worker_t *w = arg;
  main_t *m = w->m;
  uv_run(&w->loop, UV_RUN_DEFAULT);
  worker_detach(w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  int r = uv_loop_close(&w->loop);
  if (r != 0)
    fprintf(stderr, "wshub: thread %u: loop not empty at exit: %s\n", w->index,
            wshub_strerror(r));
  __atomic_add_fetch(&m->finished, 1, __ATOMIC_RELEASE);
  uv_async_send(&m->done);
}

/* Sets up worker i on its own loop (called from the main thread before
 * the worker runs). */
static int worker_init(main_t *m, worker_t *w, unsigned i) {
  w->m = m;
  w->index = i;
  int r = uv_loop_init(&w->loop);
  if (r != 0)
    return r;
  w->loop.data = w;
  wshub_config_t cfg = m->cfg;
  cfg.id_first = m->chat != NULL ? wshub_chat_id_first(m->chat, i) : i + 1;
  cfg.id_step = m->threads;
  cfg.metrics_group = m->group;
  cfg.metrics_thread = i;
  if (m->chat != NULL)
    wshub_chat_install(m->chat, &cfg);
  r = wshub_server_new(&w->loop, &cfg, &w->server);
  if (r != 0)
    return r;
  if (m->tls != NULL) {
    r = wshub_server_set_tls(w->server, m->tls);
    if (r == 0 && w->tls_fd >= 0)
      r = wshub_listen_fd_tls(w->server, w->tls_fd);
    if (r == 0)
      r = uv_async_init(&w->loop, &w->reload, worker_on_reload);
    w->reload.data = w;
    if (r != 0)
      return r;
  }
  if (w->fd >= 0)
    r = wshub_listen_fd(w->server, w->fd);
  if (r == 0 && m->metrics_port != 0) /* each thread, SO_REUSEPORT */
    r = wshub_listen_ops_fd(w->server, w->ops_fd);
  if (r == 0 && m->chat != NULL)
    r = wshub_chat_attach(m->chat, i, &w->loop, w->server);
  if (r == 0)
    r = uv_async_init(&w->loop, &w->stop, worker_on_stop);
  w->stop.data = w;
  return r;
}

/* A bound TCP socket for host:port (SO_REUSEPORT when several threads
 * share the port). */
static int listen_socket(const char *host, int port, int reuseport,
                         uv_os_sock_t *out) {
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof(addr));
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0 &&
      uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0)
    return UV_EINVAL;
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport)
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (addr.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 511) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  *out = fd;
  return 0;
}

static int socket_port(uv_os_sock_t fd) {
  struct sockaddr_storage a;
  socklen_t len = sizeof(a);
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
    return 0;
  return ntohs(a.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&a)->sin6_port
                                       : ((struct sockaddr_in *)&a)->sin_port);
}

/* One listening socket per thread on host:port, into each worker's fd
 * (tls: tls_fd); *host falls back to 0.0.0.0 without IPv6. *bound: the
 * port (port 0 picks one, which the other threads then share). Returns 0,
 * or 1 after saying why. */
static int bind_sockets(main_t *m, worker_t *workers, const char **host,
                        int port, int tls, int *bound) {
  for (unsigned i = 0; i < m->threads; i++) {
    uv_os_sock_t *fd = tls ? &workers[i].tls_fd : &workers[i].fd;
    int r = listen_socket(*host, port, m->threads > 1, fd);
    if (r != 0 && i == 0 && m->host == NULL && r != UV_EADDRINUSE &&
        strcmp(*host, "::") == 0) {
      *host = "0.0.0.0"; /* no IPv6 on this machine */
      r = listen_socket(*host, port, m->threads > 1, fd);
    }
    if (r != 0) {
      *fd = -1;
      fprintf(stderr, "wshub: cannot listen on %s port %d: %s\n", *host, port,
              r == UV_EADDRINUSE ? "address already in use"
                                 : wshub_strerror(r));
      return 1;
    }
    if (i == 0)
      port = *bound = socket_port(*fd);
  }
  return 0;
}

/* SIGHUP: the certificate and key files again. Each thread gets the new
 * context through its loop (established connections keep the old one);
 * a file that does not load changes nothing. */
static void on_sighup(uv_signal_t *sig, int signum) {
  (void)signum;
  main_t *m = sig->data;
  if (m->stopping)
    return;
  if (m->tls == NULL) { /* a service manager's reload: nothing to do */
    say(m, "info", "SIGHUP: nothing to reload (no --tls-cert)");
    return;
  }
  char err[1024];
  wshub_tls_t *tls;
  if (wshub_tls_load(m->tls_cert, m->tls_key, &tls, err, sizeof(err)) != 0) {
    fprintf(stderr, "wshub: SIGHUP: %s; keeping the current certificate\n",
            err);
    return;
  }
  __atomic_store_n(&m->tls_waiting, m->threads, __ATOMIC_RELEASE);
  for (unsigned i = 0; i < m->threads; i++) {
    worker_t *w = &m->workers[i];
    wshub_tls_free(__atomic_exchange_n(&w->tls_next, wshub_tls_ref(tls),
                                       __ATOMIC_ACQ_REL));
    uv_async_send(&w->reload);
  }
  wshub_tls_free(m->tls);
  m->tls = tls;
  fprintf(stderr, "wshub: SIGHUP: certificate %s loaded\n", m->tls_cert);
}

static void on_signal(uv_signal_t *sig, int signum) {
  main_t *m = sig->data;
  if (m->stopping) {
    say(m, "warn", "second signal, exiting now");
    _exit(1);
  }
  m->stopping = 1;
  say(m, "info", "%s received, shutting down",
      signum == SIGINT ? "SIGINT" : "SIGTERM");
  /* The handlers stay, to catch a second signal, until every worker has
   * finished (on_workers_done). */
  for (unsigned i = 0; i < m->threads; i++)
    uv_async_send(&m->workers[i].stop);
}

/* A burst of connections (a reconnect storm, a mass close) leaves freed
 * heap behind that glibc keeps; hand it back now and then. */
static void on_trim(uv_timer_t *t) {
  (void)t;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void on_workers_done(uv_async_t *a) {
  main_t *m = a->data;
  if (__atomic_add_fetch(&m->finished, 0, __ATOMIC_ACQUIRE) < m->threads)
    return;
  uv_close((uv_handle_t *)&m->done, NULL);
  uv_close((uv_handle_t *)&m->trim, NULL);
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  uv_close((uv_handle_t *)&m->sighup, NULL);
}

/* Start-up failed after binding: closes the listening sockets (and the
 * first nops operations sockets) and frees what parse_args and the TLS
 * load made. */
static void main_close_fds(main_t *m, worker_t *workers, unsigned nops) {
  for (unsigned j = 0; j < m->threads; j++) {
    if (workers[j].fd >= 0)
      close(workers[j].fd);
    if (workers[j].tls_fd >= 0)
      close(workers[j].tls_fd);
    if (j < nops)
      close(workers[j].ops_fd);
  }
  free(workers);
  wshub_tls_free(m->tls);
  config_args_free(&m->args);
}

int main(int argc, char **argv) {
  main_t m;
  memset(&m, 0, sizeof(m));
  wshub_config_init(&m.cfg);
  wshub_chat_config_init(&m.chat_cfg);
  m.cfg.log_level = WSHUB_LOG_INFO;
  m.cfg.max_per_ip = 1000;
  m.cfg.max_connections = (size_t)-1; /* from the open-file limit below */
  m.cfg.metrics = m.cfg.health = 1;
  m.port = 3000;
  m.tls_port = -1;
  int rc = parse_args(&m, argc, argv);
  if (rc >= 0) {
    config_args_free(&m.args);
    return rc;
  }
  if (m.threads == 0)
    m.threads = uv_available_parallelism();
  if (m.threads < 1)
    m.threads = 1;
  signal(SIGPIPE, SIG_IGN);
  unsigned long nofile = raise_nofile();
  if (m.cfg.max_connections == (size_t)-1)
    m.cfg.max_connections = nofile > 64 ? nofile - 32 : 0;
  /* Each thread counts its own connections: share the limits out. */
  if (m.threads > 1) {
    if (m.cfg.max_connections > 0)
      m.cfg.max_connections =
          (m.cfg.max_connections + m.threads - 1) / m.threads;
    if (m.cfg.max_per_ip > 0)
      m.cfg.max_per_ip = (m.cfg.max_per_ip + m.threads - 1) / m.threads;
  }

  /* The certificate first: a bad file is reported before anything
   * listens. */
  if (m.tls_cert != NULL) {
    char err[1024];
    if (wshub_tls_load(m.tls_cert, m.tls_key, &m.tls, err, sizeof(err)) != 0) {
      fprintf(stderr, "wshub: TLS: %s\n", err);
      config_args_free(&m.args);
      return 1;
    }
  }

  /* The sockets first: a port in use is reported before anything starts. */
  worker_t *workers = calloc(m.threads, sizeof(*workers));
  if (workers == NULL) {
    fprintf(stderr, "wshub: out of memory\n");
    config_args_free(&m.args);
    return 1;
  }
  const char *host = m.host ? m.host : "::";
  for (unsigned i = 0; i < m.threads; i++)
    workers[i].fd = workers[i].tls_fd = -1;
  /* With TLS and no --tls-port, --port speaks TLS; else it is plain. */
  int port = -1, tls_port = -1;
  int r = m.tls == NULL || m.tls_port >= 0
              ? bind_sockets(&m, workers, &host, m.port, 0, &port)
              : 0;
  if (r == 0 && m.tls != NULL)
    r = bind_sockets(&m, workers, &host, m.tls_port >= 0 ? m.tls_port : m.port,
                     1, &tls_port);
  if (r != 0) {
    main_close_fds(&m, workers, 0);
    return 1;
  }
  /* The operations port, on every thread: a scrape on any reports all. */
  for (unsigned i = 0; i < m.threads && m.metrics_port != 0; i++) {
    r = m.metrics_port == port || m.metrics_port == tls_port
            ? UV_EADDRINUSE /* SO_REUSEPORT would share it */
            : listen_socket(host, m.metrics_port, m.threads > 1,
                            &workers[i].ops_fd);
    if (r != 0) {
      fprintf(
          stderr, "wshub: cannot listen on %s port %d (--metrics-port): %s\n",
          host, m.metrics_port,
          r == UV_EADDRINUSE ? "address already in use" : wshub_strerror(r));
      main_close_fds(&m, workers, i);
      return 1;
    }
  }

  if ((m.group = wshub_metrics_group_new()) == NULL ||
      (!m.cfg.echo &&
       (m.chat = wshub_chat_new_threads(&m.chat_cfg, m.threads)) == NULL)) {
    fprintf(stderr, "wshub: out of memory\n");
    return 1;
  }
  for (unsigned i = 0; i < m.threads; i++) {
    r = worker_init(&m, &workers[i], i);
    if (r != 0) {
      fprintf(stderr, "wshub: cannot start: %s\n", wshub_strerror(r));
      return 1;
    }
  }
  /* The main thread only waits for signals and for the workers to end. */
  uv_loop_t *loop = uv_default_loop();
  uv_signal_init(loop, &m.sigint);
  uv_signal_init(loop, &m.sigterm);
  uv_async_init(loop, &m.done, on_workers_done);
  uv_timer_init(loop, &m.trim);
  uv_timer_start(&m.trim, on_trim, 10000, 10000);
  uv_unref((uv_handle_t *)&m.trim);
  m.sigint.data = m.sigterm.data = m.done.data = &m;
  m.workers = workers;
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_signal_init(loop, &m.sighup);
  m.sighup.data = &m;
  uv_signal_start(&m.sighup, on_sighup, SIGHUP);
  for (unsigned i = 0; i < m.threads; i++)
    uv_thread_create(&workers[i].thread, worker_main, &workers[i]);
  /* Only now, with SIGINT/SIGTERM handled: a supervisor that stops the
   * server as soon as it says it listens gets a clean shutdown. */
  int v6 = strchr(host, ':') != NULL;
  if (m.metrics_port != 0 && (m.cfg.metrics || m.cfg.health))
    say(&m, "info", "operations (%s%s%s) on http://%s%s%s:%d",
        m.cfg.metrics ? "/metrics" : "",
        m.cfg.metrics && m.cfg.health ? ", " : "",
        m.cfg.health ? "/healthz, /readyz" : "", v6 ? "[" : "", host,
        v6 ? "]" : "", m.metrics_port);
  char where[160], tls_where[80] = "";
  snprintf(where, sizeof(where), "%s://%s%s%s:%d", port >= 0 ? "http" : "https",
           v6 ? "[" : "", host, v6 ? "]" : "", port >= 0 ? port : tls_port);
  if (port >= 0 && tls_port >= 0)
    snprintf(tls_where, sizeof(tls_where), " and https://%s%s%s:%d",
             v6 ? "[" : "", host, v6 ? "]" : "", tls_port);
  say(&m, "info",
      "wshub " WSHUB_VERSION ": listening on %s%s (public %s%s, %u thread%s)",
      where, tls_where, m.cfg.public_dir, m.cfg.echo ? ", echo mode" : "",
      m.threads, m.threads == 1 ? "" : "s");
  if (nofile > 0)
    say(&m, "info", "open-file limit %lu: room for about %lu connections",
        nofile, nofile > 32 ? nofile - 32 : 0);
  if (strcmp(host, "::") == 0 || strcmp(host, "0.0.0.0") == 0)
    say(&m, "info", "open %s://localhost:%d", port >= 0 ? "http" : "https",
        port >= 0 ? port : tls_port);

  uv_run(loop, UV_RUN_DEFAULT);
  for (unsigned i = 0; i < m.threads; i++)
    uv_thread_join(&workers[i].thread);
  for (unsigned i = 0; i < m.threads; i++)
    wshub_tls_free(workers[i].tls_next);
  free(workers);
  wshub_chat_free(m.chat);
  config_args_free(&m.args);
  wshub_metrics_group_free(m.group);
  wshub_tls_free(m.tls);
  r = uv_loop_close(loop);
  if (r != 0)
    fprintf(stderr, "wshub: loop not empty at exit: %s\n", wshub_strerror(r));
  say(&m, "info", "stopped");
  return 0;
}
