/* test_cluster.c — tests of cluster.c, a node's link to Redis, against a
 * real redis-server that this test starts and stops itself.
 *
 * Covers: URL parsing; links that come up (and one aimed at a closed port
 * that stays down without blocking the loop); two links A and B sharing a
 * room, interleaved publishes heard by both in the same order with ids
 * 1..N, each once, byte-exact; rooms not subscribed and unsubscribed; the
 * room's Stream (checked with a plain blocking hiredis connection) and its
 * MAXLEN ~ bound; the id floor; Redis killed and restarted empty on the same
 * port (links go down once, come back by themselves, rooms subscribed again,
 * ids carry on from the floor); close, after which the loop closes clean.
 *
 * Redis: `redis-server --port P --bind 127.0.0.1 --save "" ...` on a port
 * found free by binding 127.0.0.1:0, its output in an unlinked temp file.
 * The child asks for SIGKILL when this process dies (PR_SET_PDEATHSIG), so
 * no path leaves it behind; normal and failure paths kill it by PID too,
 * and an alarm() watchdog ends a run that hangs. One uv loop, owned by
 * main; all state in a test_t handed to the callbacks as `user`.
 */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cluster.h"
#include "unit.h"

#define NPUB 60          /* scenario 3: 30 by A, 30 by B */
#define BIG (100 * 1024) /* the large payload */
#define NHIST 500        /* scenario 5: publishes with history = 10 */
#ifndef WATCHDOG_S
#define WATCHDOG_S 60 /* seconds; ends a run that hangs */
#endif

typedef struct test_s test_t;

typedef struct {
  char room[16];
  uint64_t id;
  char *data;
  size_t len;
} heard_t;

typedef struct {
  test_t *t;
  const char *name;
  wshub_cluster_t *c;
  int ups, downs, closed, late; /* late: callbacks after close */
  heard_t *heard;
  size_t n, cap;
} link_t;

typedef struct {
  int calls, err;
  uint64_t id;
} done_t;

struct test_s {
  unit_t *T;
  uv_loop_t loop;
  uv_timer_t tick; /* keeps each UV_RUN_ONCE short while waiting */
  uv_timer_t once; /* proves the loop runs beside a link that can't connect */
  int port, fired;
  pid_t redis;
  FILE *log; /* redis-server's output: an unlinked temporary file */
  link_t a, b, dead;
  char *big;
};

/* ---- redis-server ---- */

static void redis_print_log(test_t *t) {
  char line[256];
  rewind(t->log);
  while (fgets(line, sizeof(line), t->log))
    fprintf(stderr, "  redis-server: %s", line);
}

static void redis_stop(test_t *t, int sig) {
  if (t->redis <= 0)
    return;
  kill(t->redis, sig);
  for (int i = 0; i < 500; i++) { /* 5 s */
    if (waitpid(t->redis, NULL, WNOHANG) == t->redis) {
      t->redis = 0;
      return;
    }
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  kill(t->redis, SIGKILL);
  waitpid(t->redis, NULL, 0);
  t->redis = 0;
}

static _Noreturn void test_abort_log(test_t *t, const char *why, int show_log) {
  fprintf(stderr,
          "FATAL: %s\n  A: up %d/down %d, heard %zu; B: up %d/down %d, "
          "heard %zu\n",
          why, t->a.ups, t->a.downs, t->a.n, t->b.ups, t->b.downs, t->b.n);
  redis_stop(t, SIGKILL);
  if (show_log)
    redis_print_log(t);
  exit(1);
}

static int port_free(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t sl = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

static pid_t redis_spawn(test_t *t) {
  char port[16];
  snprintf(port, sizeof(port), "%d", t->port);
  fflush(t->log);
  pid_t parent = getpid(), pid = fork();
  if (pid != 0)
    return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(126);
  int in = open("/dev/null", O_RDONLY);
  int out = fileno(t->log);
  if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
    _exit(126);
  for (int fd = 3; fd < 1024; fd++) /* not the links' sockets */
    close(fd);
  execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--daemonize", "no",
         "--protected-mode", "no", "--dir", "/tmp", (char *)NULL);
  fprintf(stderr, "exec redis-server: %s\n", strerror(errno));
  _exit(127);
}

/* One command on a fresh blocking connection (NULL on failure). */
static redisReply *redis_query(test_t *t, const char *fmt, ...) {
  redisContext *rc =
      redisConnectWithTimeout("127.0.0.1", t->port, (struct timeval){2, 0});
  redisReply *r = NULL;
  if (rc && !rc->err) {
    va_list ap;
    va_start(ap, fmt);
    r = redisvCommand(rc, fmt, ap);
    va_end(ap);
  }
  if (rc)
    redisFree(rc);
  return r;
}

/* Waits until redis answers PING; 0, or -1 when it exited or never did. */
static int redis_wait(test_t *t) {
  for (int i = 0; i < 200; i++) { /* 10 s */
    int st;
    if (waitpid(t->redis, &st, WNOHANG) == t->redis) {
      t->redis = 0;
      if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        test_abort_log(t,
                       "redis-server is not installed (apt-get install "
                       "redis-server): this test needs a real one",
                       1);
      return -1;
    }
    redisReply *r = redis_query(t, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
    if (r)
      freeReplyObject(r);
    if (ok)
      return 0;
    nanosleep(&(struct timespec){0, 50000000}, NULL);
  }
  redis_stop(t, SIGKILL);
  return -1;
}

/* Starts redis on a free port, or on t->port again when same_port. */
static void redis_start(test_t *t, int same_port) {
  for (int i = 0; i < 5; i++) {
    if (!same_port)
      t->port = port_free();
    t->redis = redis_spawn(t);
    if (t->redis > 0 && redis_wait(t) == 0)
      return;
    nanosleep(&(struct timespec){0, 200000000}, NULL);
  }
  test_abort_log(t, "redis-server did not start", 1);
}

/* cmd: a format with one %s, the key. */
static long long redis_int(test_t *t, const char *cmd, const char *key) {
  redisReply *r = redis_query(t, cmd, key);
  long long v = -1;
  if (r && r->type == REDIS_REPLY_INTEGER)
    v = r->integer;
  else if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           r->element[1]->type == REDIS_REPLY_INTEGER) /* PUBSUB NUMSUB */
    v = r->element[1]->integer;
  if (r)
    freeReplyObject(r);
  return v;
}

static long long numsub(test_t *t, const char *room) {
  char ch[64];
  snprintf(ch, sizeof(ch), "wshub:room:%s", room);
  return redis_int(t, "PUBSUB NUMSUB %s", ch);
}

/* ---- the loop ---- */

static _Noreturn void test_abort(test_t *t, const char *why) {
  test_abort_log(t, why, 0);
}

static uint64_t test_now(test_t *t) {
  uv_update_time(&t->loop);
  return uv_now(&t->loop);
}

static void test_step(test_t *t, uint64_t deadline, const char *what) {
  char why[160];
  if (test_now(t) > deadline) {
    snprintf(why, sizeof(why), "timed out waiting for: %s", what);
    test_abort(t, why);
  }
  uv_run(&t->loop, UV_RUN_ONCE);
}

/* Runs the loop until cond holds; fatal after ms. */
#define WAIT_UNTIL(t, cond, ms, what)                                          \
  for (uint64_t dl_ = test_now(t) + (ms); !(cond);)                            \
  test_step((t), dl_, (what))

static void timer_cb(uv_timer_t *h) {
  if (h->data != NULL) /* the tick has none */
    *(int *)h->data = 1;
}

/* ---- the links' callbacks ---- */

static void link_on_message(void *user, const char *room, uint64_t id,
                            const char *payload, size_t len) {
  link_t *l = user;
  if (l->closed) {
    l->late++;
    return;
  }
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->heard = realloc(l->heard, l->cap * sizeof(*l->heard));
    if (!l->heard)
      test_abort(l->t, "out of memory");
  }
  heard_t *h = &l->heard[l->n++];
  snprintf(h->room, sizeof(h->room), "%s", room);
  h->id = id;
  h->len = len;
  h->data = malloc(len + 1);
  if (!h->data)
    test_abort(l->t, "out of memory");
  memcpy(h->data, payload, len);
}

static void link_on_state(void *user, int up) {
  link_t *l = user;
  *(l->closed ? &l->late : up ? &l->ups : &l->downs) += 1;
}

static void link_on_log(void *user, int level, const char *msg) {
  link_t *l = user;
  fprintf(stderr, "  [%s log %d] %s\n", l->name, level, msg);
}

static void on_done(void *arg, uint64_t id, int err) {
  done_t *d = arg;
  d->calls++;
  d->id = id;
  d->err = err;
}

static const wshub_cluster_cb_t link_cb = {
    .on_message = link_on_message,
    .on_state = link_on_state,
    .on_log = link_on_log,
};

static void link_open(test_t *t, link_t *l, const char *name, int port) {
  unit_t *T = t->T;
  char url[64];
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
  l->t = t;
  l->name = name;
  if (!CHECK_EQ_INT(wshub_cluster_new(&t->loop, url, &link_cb, l, &l->c), 0))
    test_abort(t, "wshub_cluster_new failed");
}

static void pub(test_t *t, link_t *l, const char *room, const char *p, size_t n,
                uint64_t floor, size_t hist, done_t *d) {
  unit_t *T = t->T;
  int rc = wshub_cluster_publish(l->c, room, p, n, floor, hist, on_done, d);
  if (!CHECK_EQ_INT(rc, 0))
    fprintf(stderr, "  publish by %s in %s\n", l->name, room);
}

/* The on_state(1) and on_state(0) counts, and wshub_cluster_up(). */
static void check_state(test_t *t, link_t *l, int ups, int downs, int up) {
  unit_t *T = t->T;
  int ok = CHECK_EQ_INT(l->ups, ups);
  ok &= CHECK_EQ_INT(l->downs, downs);
  ok &= CHECK_EQ_INT(wshub_cluster_up(l->c), up);
  if (!ok)
    fprintf(stderr, "  (the state of %s)\n", l->name);
}

static void check_heard(test_t *t, link_t *l, size_t k, const char *room,
                        uint64_t id, const char *p, size_t n) {
  unit_t *T = t->T;
  if (!CHECK(k < l->n)) {
    fprintf(stderr, "  %s heard only %zu, want #%zu\n", l->name, l->n, k);
    return;
  }
  heard_t *h = &l->heard[k];
  int ok = CHECK_EQ_STR(h->room, room);
  ok &= CHECK_EQ_INT(h->id, id);
  ok &= CHECK_MEM(h->data, h->len, p, n);
  if (!ok)
    fprintf(stderr, "  (%s heard #%zu)\n", l->name, k);
}

/* ---- scenarios ---- */

static void test_parse_url(unit_t *T) {
  static const struct {
    const char *url, *host;
    int port, db;
  } ok[] = {{"redis://127.0.0.1:6380/2", "127.0.0.1", 6380, 2},
            {"redis://localhost", "localhost", 6379, 0},
            {"redis://[::1]:7000", "::1", 7000, 0},
            {"redis://[::1]", "::1", 6379, 0},
            {"redis://h/0", "h", 6379, 0},
            {"redis://h:1/15", "h", 1, 15}};
  static const char *const bad[] = {
      "127.0.0.1:6379",  "http://h:6379",     "redis:/h",        "redis://h:0",
      "redis://h:70000", "redis://h:x",       "redis://h:-1",    "redis://h/-1",
      "redis://h/x",     "redis://",          "redis://:6379",   "redis:///0",
      "redis://h:6379x", "redis://h:6379/0x", "redis://h/0/1",   "redis://[::1",
      "redis://[::1]x",  "redis://h:6379/0 ", "redis://[]:6379", ""};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    char host[64] = "";
    int port = -1, db = -1;
    if (!CHECK_EQ_INT(
            wshub_cluster_parse_url(ok[i].url, host, sizeof(host), &port, &db),
            0))
      fprintf(stderr, "  url %s\n", ok[i].url);
    CHECK_EQ_STR(host, ok[i].host);
    CHECK_EQ_INT(port, ok[i].port);
    CHECK_EQ_INT(db, ok[i].db);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char host[64];
    int port, db;
    if (!CHECK_EQ_INT(
            wshub_cluster_parse_url(bad[i], host, sizeof(host), &port, &db),
            UV_EINVAL))
      fprintf(stderr, "  url \"%s\"\n", bad[i]);
  }
  char small[8]; /* a host that does not fit is refused, not cut */
  int port, db;
  CHECK_EQ_INT(wshub_cluster_parse_url("redis://abcdefghijk", small,
                                       sizeof(small), &port, &db),
               UV_EINVAL);
}

/* 2: a link to a closed port stays down without blocking; A and B up. */
static void test_up(test_t *t) {
  unit_t *T = t->T;
  wshub_cluster_t *c = NULL;
  CHECK_EQ_INT(wshub_cluster_new(&t->loop, "http://x", &link_cb, &t->dead, &c),
               UV_EINVAL);
  int closed = port_free();
  link_open(t, &t->dead, "dead", closed);
  uv_timer_init(&t->loop, &t->once);
  t->once.data = &t->fired;
  uv_timer_start(&t->once, timer_cb, 300, 0);
  WAIT_UNTIL(t, t->fired, 5000,
             "a 300 ms timer beside a link to a closed "
             "port (is the loop blocked?)");
  uv_close((uv_handle_t *)&t->once, NULL);
  CHECK_EQ_INT(wshub_cluster_up(t->dead.c), 0);
  CHECK_EQ_INT(t->dead.ups, 0);
  CHECK_EQ_INT(
      wshub_cluster_publish(t->dead.c, "r1", "x", 1, 0, 10, on_done, NULL),
      UV_ENOTCONN);

  link_open(t, &t->a, "A", t->port);
  link_open(t, &t->b, "B", t->port);
  CHECK_EQ_INT(wshub_cluster_up(t->a.c), 0);
  CHECK_EQ_INT(
      wshub_cluster_publish(t->a.c, "r1", "x", 1, 0, 10, on_done, NULL),
      UV_ENOTCONN);
  WAIT_UNTIL(t, t->a.ups && t->b.ups, 10000, "A and B on_state(1)");
  check_state(t, &t->a, 1, 0, 1);
  check_state(t, &t->b, 1, 0, 1);
}

/* 3: 60 interleaved publishes in r1, heard by both, same order, ids 1..60. */
static void test_fanout(test_t *t) {
  unit_t *T = t->T;
  char *p[NPUB];
  size_t len[NPUB];
  done_t done[NPUB] = {0};
  int seen[NPUB] = {0};
  static const char *const special[] = {
      "hello world, with spaces",
      "  two leading and trailing spaces  ",
      ("h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac "
       "\xf0\x9f\x8e\x89"),
      "",
      "" /* 4: t->big */,
      "line one\nline two\r\n",
      "7 looks like an id"};
  for (int i = 0; i < NPUB; i++) {
    char buf[64];
    snprintf(buf, sizeof(buf), "message %d from %c", i, i % 2 ? 'B' : 'A');
    p[i] = i == 4 ? t->big : strdup(i < 7 ? special[i] : buf);
    len[i] = i == 4 ? BIG : strlen(p[i]);
  }
  CHECK_EQ_INT(wshub_cluster_subscribe(t->a.c, "r1"), 0);
  CHECK_EQ_INT(wshub_cluster_subscribe(t->b.c, "r1"), 0);
  WAIT_UNTIL(t, numsub(t, "r1") == 2, 5000, "NUMSUB r1 == 2");
  for (int i = 0; i < NPUB; i++) {
    if (i == 40) /* the rest while messages are already flowing */
      WAIT_UNTIL(t, t->a.n >= 10 && t->b.n >= 10, 10000, "10 heard each");
    pub(t, i % 2 ? &t->b : &t->a, "r1", p[i], len[i], 0, 1000, &done[i]);
  }
  WAIT_UNTIL(t, t->a.n >= NPUB && t->b.n >= NPUB, 10000, "60 heard by each");
  for (int i = 0; i < NPUB; i++) /* they come before the echo, or just after */
    WAIT_UNTIL(t, done[i].calls, 5000, "every publish's done callback");
  CHECK_EQ_INT(t->a.n, NPUB);
  CHECK_EQ_INT(t->b.n, NPUB);
  for (size_t k = 0; k < NPUB && k < t->a.n; k++) {
    heard_t *h = &t->a.heard[k];
    int m = -1;
    for (int i = 0; i < NPUB && m < 0; i++)
      if (len[i] == h->len && !memcmp(p[i], h->data, h->len))
        m = i;
    if (!CHECK(m >= 0)) {
      fprintf(stderr, "  A heard #%zu (%zu bytes), published by nobody: ", k,
              h->len);
      unit_print_bytes(h->data, h->len < 80 ? h->len : 80);
      fputc('\n', stderr);
      continue;
    }
    seen[m]++;
    check_heard(t, &t->a, k, "r1", k + 1, p[m], len[m]);
    check_heard(t, &t->b, k, "r1", k + 1, p[m], len[m]);
    CHECK_EQ_INT(done[m].calls, 1);
    CHECK_EQ_INT(done[m].err, 0);
    if (!CHECK_EQ_INT(done[m].id, k + 1))
      fprintf(stderr, "  done id of message %d\n", m);
  }
  for (int i = 0; i < NPUB; i++) {
    if (!CHECK_EQ_INT(seen[i], 1))
      fprintf(stderr, "  message %d heard %d times\n", i, seen[i]);
    if (i != 4)
      free(p[i]);
  }
}

/* 4: a room B is not in; B leaving r1. */
static void test_rooms(test_t *t) {
  unit_t *T = t->T;
  done_t d[10] = {0};
  char buf[32];
  CHECK_EQ_INT(wshub_cluster_subscribe(t->a.c, "r2"), 0);
  CHECK_EQ_INT(wshub_cluster_subscribe(t->b.c, "r3"), 0);
  WAIT_UNTIL(t, numsub(t, "r2") == 1 && numsub(t, "r3") == 1, 5000,
             "NUMSUB r2 == 1 and r3 == 1");
  for (int i = 0; i < 5; i++) {
    snprintf(buf, sizeof(buf), "r2 message %d", i + 1);
    pub(t, &t->a, "r2", buf, strlen(buf), 0, 100, &d[i]);
  }
  pub(t, &t->a, "r1", "sentinel 1", 10, 0, 1000, &d[5]);
  WAIT_UNTIL(t, t->a.n >= 66 && t->b.n >= 61, 5000, "r2 and the sentinel");
  for (int i = 0; i < 5; i++) {
    snprintf(buf, sizeof(buf), "r2 message %d", i + 1);
    check_heard(t, &t->a, 60 + i, "r2", i + 1, buf, strlen(buf));
  }
  check_heard(t, &t->a, 65, "r1", 61, "sentinel 1", 10);
  CHECK_EQ_INT(t->b.n, 61); /* nothing from r2 */
  check_heard(t, &t->b, 60, "r1", 61, "sentinel 1", 10);

  CHECK_EQ_INT(wshub_cluster_unsubscribe(t->b.c, "r1"), 0);
  CHECK_EQ_INT(wshub_cluster_unsubscribe(t->b.c, "r1"), 0); /* no-op */
  CHECK_EQ_INT(wshub_cluster_subscribe(t->a.c, "r1"), 0);   /* no-op */
  WAIT_UNTIL(t, numsub(t, "r1") == 1, 5000, "NUMSUB r1 == 1");
  for (int i = 0; i < 3; i++) {
    snprintf(buf, sizeof(buf), "after B left %d", i);
    pub(t, &t->a, "r1", buf, strlen(buf), 0, 1000, &d[6 + i]);
  }
  pub(t, &t->a, "r3", "sentinel 3", 10, 0, 100, &d[9]);
  WAIT_UNTIL(t, t->a.n >= 69 && t->b.n >= 62, 5000, "r1 after B left");
  for (int i = 0; i < 3; i++) {
    snprintf(buf, sizeof(buf), "after B left %d", i);
    check_heard(t, &t->a, 66 + i, "r1", 62 + i, buf, strlen(buf));
  }
  CHECK_EQ_INT(t->b.n, 62);
  check_heard(t, &t->b, 61, "r3", 1, "sentinel 3", 10);
  for (int i = 0; i < 10; i++) {
    CHECK_EQ_INT(d[i].calls, 1);
    CHECK_EQ_INT(d[i].err, 0);
  }
  CHECK_EQ_INT(d[9].id, 1);

  CHECK_EQ_INT(wshub_cluster_subscribe(t->b.c, "r1"), 0); /* for 7 */
  WAIT_UNTIL(t, numsub(t, "r1") == 2, 5000, "NUMSUB r1 == 2 again");
}

/* 5: the Stream of r1, and its bound with history = 10. */
static void test_history(test_t *t) {
  unit_t *T = t->T;
  CHECK_EQ_INT(redis_int(t, "XLEN %s", "wshub:room:r1:log"), 64);
  redisReply *r = redis_query(t, "XRANGE wshub:room:r1:log - +");
  if (CHECK(r && r->type == REDIS_REPLY_ARRAY) && CHECK_EQ_INT(r->elements, 64))
    for (size_t k = 0; k < r->elements; k++) {
      redisReply *e = r->element[k], *f;
      char want[32];
      snprintf(want, sizeof(want), "%zu-0", k + 1);
      if (!CHECK(e->type == REDIS_REPLY_ARRAY && e->elements == 2))
        break;
      CHECK_EQ_STR(e->element[0]->str, want);
      const heard_t *h = NULL; /* what A heard with that id in r1 */
      for (size_t j = 0; j < t->a.n && !h; j++)
        if (!strcmp(t->a.heard[j].room, "r1") && t->a.heard[j].id == k + 1)
          h = &t->a.heard[j];
      f = e->element[1];
      int found = 0;
      for (size_t j = 1; h && j < f->elements; j += 2)
        found |= f->element[j]->len == h->len &&
                 !memcmp(f->element[j]->str, h->data, h->len);
      if (!CHECK(found))
        fprintf(stderr, "  stream entry %s lacks its payload\n", want);
    }
  if (r)
    freeReplyObject(r);

  done_t *d = calloc(NHIST, sizeof(*d));
  char buf[16];
  for (int i = 0; i < NHIST; i++) {
    snprintf(buf, sizeof(buf), "h%d", i);
    pub(t, &t->a, "r5", buf, strlen(buf), 0, 10, &d[i]);
  }
  WAIT_UNTIL(t, d[NHIST - 1].calls, 20000, "500 publishes in r5 done");
  for (int i = 0; i < NHIST; i++) { /* one connection: ids in call order */
    if (!CHECK_EQ_INT(d[i].calls, 1) || !CHECK_EQ_INT(d[i].err, 0) ||
        !CHECK_EQ_INT(d[i].id, i + 1)) {
      fprintf(stderr, "  r5 publish %d\n", i);
      break;
    }
  }
  free(d);
  /* MAXLEN ~ 10 drops only whole nodes (stream-node-max-entries 100). */
  long long n = redis_int(t, "XLEN %s", "wshub:room:r5:log");
  CHECK(n >= 10);
  if (!CHECK(n <= 10 + 100))
    fprintf(stderr, "  XLEN wshub:room:r5:log = %lld\n", n);
  r = redis_query(t, "XREVRANGE wshub:room:r5:log + - COUNT 1");
  if (CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->elements == 2))
    CHECK_EQ_STR(r->element[0]->element[0]->str, "500-0");
  if (r)
    freeReplyObject(r);
  r = redis_query(t, "GET wshub:room:r5:seq");
  if (CHECK(r && r->type == REDIS_REPLY_STRING))
    CHECK_EQ_STR(r->str, "500");
  if (r)
    freeReplyObject(r);
}

/* 6: the id floor. */
static void test_floor(test_t *t) {
  unit_t *T = t->T;
  static const uint64_t floors[] = {1000, 0, 0, 5};
  done_t d[4] = {0};
  size_t base = t->a.n;
  CHECK_EQ_INT(wshub_cluster_subscribe(t->a.c, "r6"), 0);
  WAIT_UNTIL(t, numsub(t, "r6") == 1, 5000, "NUMSUB r6 == 1");
  for (int i = 0; i < 4; i++)
    pub(t, &t->a, "r6", "f", 1, floors[i], 100, &d[i]);
  WAIT_UNTIL(t, t->a.n >= base + 4 && d[3].calls, 5000, "4 heard in r6");
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_INT(d[i].id, 1001 + i);
    check_heard(t, &t->a, base + i, "r6", 1001 + i, "f", 1);
  }
}

/* 7: Redis killed and restarted empty on the same port. */
static void test_restart(test_t *t) {
  unit_t *T = t->T;
  done_t lost = {0}, d[2] = {0};
  size_t an = t->a.n, bn = t->b.n;
  redis_stop(t, SIGKILL);
  WAIT_UNTIL(t, t->a.downs && t->b.downs, 10000, "on_state(0) on A and B");
  check_state(t, &t->a, 1, 1, 0);
  check_state(t, &t->b, 1, 1, 0);
  CHECK_EQ_INT(
      wshub_cluster_publish(t->a.c, "r1", "lost", 4, 64, 1000, on_done, &lost),
      UV_ENOTCONN);
  CHECK_EQ_INT(
      wshub_cluster_publish(t->b.c, "r1", "lost", 4, 64, 1000, on_done, &lost),
      UV_ENOTCONN);
  uint64_t until = test_now(t) + 1000; /* a few failed tries first */
  WAIT_UNTIL(t, test_now(t) >= until, 5000, "1 s while Redis is down");
  redis_start(t, 1);
  WAIT_UNTIL(t, t->a.ups >= 2 && t->b.ups >= 2, 20000,
             "on_state(1) on A and B after Redis restarted");
  check_state(t, &t->a, 2, 1, 1); /* on_state(0) once, however many tries */
  check_state(t, &t->b, 2, 1, 1);
  /* on_state(1) means every room subscribed again: publish at once. */
  pub(t, &t->a, "r1", "after restart", 13, 64, 1000, &d[0]);
  pub(t, &t->b, "r2", "r2 after restart", 16, 5, 100, &d[1]);
  WAIT_UNTIL(t, t->a.n >= an + 2 && t->b.n >= bn + 1, 5000,
             "messages after the restart");
  check_heard(t, &t->a, an, "r1", 65, "after restart", 13);
  check_heard(t, &t->a, an + 1, "r2", 6, "r2 after restart", 16);
  check_heard(t, &t->b, bn, "r1", 65, "after restart", 13);
  WAIT_UNTIL(t, d[0].calls && d[1].calls, 5000, "done after the restart");
  CHECK_EQ_INT(d[0].id, 65);
  CHECK_EQ_INT(d[1].id, 6);
  CHECK_EQ_INT(d[0].err + d[1].err, 0);
  CHECK_EQ_INT(lost.calls, 0);
}

static void walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "  handle left on the loop: %s%s\n",
          uv_handle_type_name(uv_handle_get_type(h)),
          uv_is_closing(h) ? " (closing)" : "");
}

/* 8: close with a publish pending; the loop must end with no handle. */
static void test_close(test_t *t) {
  unit_t *T = t->T;
  done_t pending = {0};
  pub(t, &t->a, "r1", "pending", 7, 0, 1000, &pending);
  link_t *all[] = {&t->a, &t->b, &t->dead};
  for (int i = 0; i < 3; i++) {
    wshub_cluster_close(all[i]->c);
    all[i]->closed = 1;
  }
  uv_close((uv_handle_t *)&t->tick, NULL);
  uint64_t end = uv_hrtime() + 5000000000ull;
  while (uv_loop_alive(&t->loop) && uv_hrtime() < end) {
    uv_run(&t->loop, UV_RUN_NOWAIT);
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  CHECK_EQ_INT(t->a.late + t->b.late + t->dead.late, 0);
  CHECK_EQ_INT(pending.calls, 0);
  if (!CHECK_EQ_INT(uv_loop_close(&t->loop), 0)) {
    uv_walk(&t->loop, walk_cb, NULL);
    test_abort(t, "the loop still has handles after wshub_cluster_close");
  }
}

static void on_alarm(int sig) {
  static const char msg[] = "FATAL: test_cluster watchdog expired\n";
  (void)sig;
  (void)!write(2, msg, sizeof(msg) - 1);
  _exit(3); /* redis-server dies with us (PR_SET_PDEATHSIG) */
}

int main(void) {
  unit_t u = {0}, *T = &u;
  test_t t = {.T = T};
  signal(SIGPIPE, SIG_IGN); /* as the server does: hiredis writes sockets */
  signal(SIGALRM, on_alarm);
  alarm(WATCHDOG_S);
  if (!(t.log = tmpfile())) {
    perror("tmpfile");
    return 1;
  }
  t.big = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    t.big[i] = (char)('a' + i * 7 % 26);

  test_parse_url(T);
  redis_start(&t, 0);
  uv_loop_init(&t.loop);
  uv_timer_init(&t.loop, &t.tick);
  uv_timer_start(&t.tick, timer_cb, 10, 10);

  test_up(&t);
  test_fanout(&t);
  test_rooms(&t);
  test_history(&t);
  test_floor(&t);
  test_restart(&t);
  check_state(&t, &t.dead, 0, 0, 0); /* down the whole run, no change */
  test_close(&t);

  redis_stop(&t, SIGTERM);
  fclose(t.log);
  link_t *all[] = {&t.a, &t.b, &t.dead};
  for (int i = 0; i < 3; i++) {
    for (size_t k = 0; k < all[i]->n; k++)
      free(all[i]->heard[k].data);
    free(all[i]->heard);
  }
  free(t.big);
  return unit_finish(T);
}
