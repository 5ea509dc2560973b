/* test_tls.c — the embedder's side of TLS: wshub_tls_load's errors (exact
 * codes and sentences naming the file), a server given tls_cert / tls_key in
 * its config and listening with wshub_listen_tls, answered by a real OpenSSL
 * client on another thread, wshub_tls_reload to a new certificate (a new
 * connection is served it) and a failed reload (the current one stays, the
 * reason logged).
 *
 * Certificates are made with the `openssl` command into a temporary
 * directory, removed at the end.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#define _DEFAULT_SOURCE /* mkdtemp */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "unit.h"
#include "wshub.h"

static char dir[64];

static void path_of(char *out, size_t len, const char *name) {
  snprintf(out, len, "%s/%s", dir, name);
}

/* A self-signed EC certificate and key: <name>.crt, <name>.key. */
static int make_cert(const char *name) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd),
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
           "-nodes -keyout %s/%s.key -out %s/%s.crt -days 2 -subj /CN=%s "
           ">/dev/null 2>&1",
           dir, name, dir, name, name);
  return system(cmd);
}

static void copy_file(const char *from, const char *to) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "cp %s %s", from, to);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot copy %s\n", from);
}

/* SHA-256 of the certificate in a PEM file. */
static void file_digest(const char *path, unsigned char *md, unsigned *n) {
  *n = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return;
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (x != NULL)
    X509_digest(x, EVP_sha256(), md, n);
  X509_free(x);
}

/* ---- load errors ---- */

static void test_load_errors(unit_t *T) {
  char a_crt[128], a_key[128], b_key[128], junk[128], missing[128], enc[128];
  path_of(a_crt, sizeof(a_crt), "a.crt");
  path_of(a_key, sizeof(a_key), "a.key");
  path_of(b_key, sizeof(b_key), "b.key");
  path_of(junk, sizeof(junk), "junk.pem");
  path_of(missing, sizeof(missing), "missing.pem");
  path_of(enc, sizeof(enc), "enc.key");
  char want[512], err[512];
  wshub_tls_t *tls = NULL;

  CHECK_EQ_INT(wshub_tls_load(a_crt, a_key, &tls, err, sizeof(err)), 0);
  CHECK(tls != NULL);
  CHECK_EQ_STR(err, "");
  CHECK(wshub_tls_ref(tls) == tls);
  wshub_tls_free(tls);
  wshub_tls_free(tls);

  CHECK_EQ_INT(wshub_tls_load(missing, a_key, &tls, err, sizeof(err)),
               UV_ENOENT);
  CHECK(tls == NULL);
  snprintf(want, sizeof(want), "certificate %s: No such file or directory",
           missing);
  CHECK_EQ_STR(err, want);

  CHECK_EQ_INT(wshub_tls_load(a_crt, missing, &tls, err, sizeof(err)),
               UV_ENOENT);
  snprintf(want, sizeof(want), "private key %s: No such file or directory",
           missing);
  CHECK_EQ_STR(err, want);

  CHECK_EQ_INT(wshub_tls_load(junk, a_key, &tls, err, sizeof(err)), UV_EINVAL);
  snprintf(want, sizeof(want), "certificate %s: not a PEM certificate (", junk);
  CHECK(strncmp(err, want, strlen(want)) == 0);

  CHECK_EQ_INT(wshub_tls_load(a_crt, junk, &tls, err, sizeof(err)), UV_EINVAL);
  snprintf(want, sizeof(want), "private key %s: not a PEM private key (", junk);
  CHECK(strncmp(err, want, strlen(want)) == 0);

  /* A certificate given as the key. */
  CHECK_EQ_INT(wshub_tls_load(a_crt, a_crt, &tls, err, sizeof(err)), UV_EINVAL);
  snprintf(want, sizeof(want), "private key %s: not a PEM private key (",
           a_crt);
  CHECK(strncmp(err, want, strlen(want)) == 0);

  CHECK_EQ_INT(wshub_tls_load(a_crt, b_key, &tls, err, sizeof(err)), UV_EINVAL);
  snprintf(want, sizeof(want), "private key %s does not match certificate %s",
           b_key, a_crt);
  CHECK_EQ_STR(err, want);

  CHECK_EQ_INT(wshub_tls_load(a_crt, enc, &tls, err, sizeof(err)), UV_EINVAL);
  snprintf(want, sizeof(want),
           "private key %s: encrypted with a passphrase, which is not "
           "supported",
           enc);
  CHECK_EQ_STR(err, want);

  CHECK_EQ_INT(wshub_tls_load(NULL, a_key, &tls, err, sizeof(err)), UV_EINVAL);
  CHECK_EQ_INT(wshub_tls_load(a_crt, a_key, &tls, NULL, 0), 0);
  wshub_tls_free(tls);
}

/* ---- a server and a client ---- */

typedef struct {
  uv_loop_t loop;
  wshub_server_t *server;
  char log[2048]; /* the last error logged */
  int closed;
  /* the client's result */
  int port;
  char response[64];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen;
  uv_async_t done;
} env_t;

static void env_log(void *user, wshub_log_level_t level, const char *msg) {
  env_t *e = user;
  if (level == WSHUB_LOG_ERROR)
    snprintf(e->log, sizeof(e->log), "%s", msg);
}

/* One HTTPS request on a new connection: the status line and the served
 * certificate's digest. Runs on its own thread, blocking. */
static void client_main(void *arg) {
  env_t *e = arg;
  e->response[0] = '\0';
  e->mdlen = 0;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)e->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ssl != NULL && fd >= 0 &&
      connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1) {
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (x != NULL)
      X509_digest(x, EVP_sha256(), e->md, &e->mdlen);
    X509_free(x);
    static const char req[] =
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    if (SSL_write(ssl, req, sizeof(req) - 1) == (int)sizeof(req) - 1) {
      char buf[4096];
      int n = SSL_read(ssl, buf, sizeof(buf) - 1);
      if (n > 0) {
        buf[n] = '\0';
        char *eol = strstr(buf, "\r\n");
        if (eol != NULL)
          *eol = '\0';
        size_t k = strlen(buf);
        if (k >= sizeof(e->response))
          k = sizeof(e->response) - 1;
        memcpy(e->response, buf, k);
        e->response[k] = '\0';
      }
    }
  }
  if (fd >= 0)
    close(fd);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  uv_async_send(&e->done);
}

static void on_done(uv_async_t *a) {
  env_t *e = a->data;
  uv_close((uv_handle_t *)a, NULL);
  uv_stop(&e->loop);
}

/* Runs one client against the server while the loop turns. */
static void exchange(env_t *e) {
  uv_async_init(&e->loop, &e->done, on_done);
  e->done.data = e;
  uv_thread_t th;
  uv_thread_create(&th, client_main, e);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  uv_thread_join(&th);
  uv_run(&e->loop, UV_RUN_NOWAIT); /* the async's close */
}

static void on_closed(wshub_server_t *s) {
  env_t *e = wshub_server_user(s);
  e->closed = 1;
}

static void test_server(unit_t *T) {
  static env_t env;
  env_t *e = &env;
  char live_crt[128], live_key[128], a_crt[128], a_key[128], b_crt[128],
      b_key[128], junk[128], missing[128];
  path_of(live_crt, sizeof(live_crt), "live.crt");
  path_of(live_key, sizeof(live_key), "live.key");
  path_of(a_crt, sizeof(a_crt), "a.crt");
  path_of(a_key, sizeof(a_key), "a.key");
  path_of(b_crt, sizeof(b_crt), "b.crt");
  path_of(b_key, sizeof(b_key), "b.key");
  path_of(junk, sizeof(junk), "junk.pem");
  path_of(missing, sizeof(missing), "missing.pem");
  unsigned char md_a[EVP_MAX_MD_SIZE], md_b[EVP_MAX_MD_SIZE];
  unsigned len_a, len_b;
  file_digest(a_crt, md_a, &len_a);
  file_digest(b_crt, md_b, &len_b);
  CHECK_EQ_INT(len_a, 32);
  CHECK_EQ_INT(len_b, 32);
  copy_file(a_crt, live_crt);
  copy_file(a_key, live_key);

  if (!CHECK_EQ_INT(uv_loop_init(&e->loop), 0))
    return;
  wshub_config_t cfg;
  wshub_config_init(&cfg);
  cfg.log_cb = env_log;
  cfg.log_user = e;
  cfg.user = e;

  /* A bad file: the server is not made; the log names the file. */
  cfg.tls_cert = missing;
  cfg.tls_key = live_key;
  CHECK_EQ_INT(wshub_server_new(&e->loop, &cfg, &e->server), UV_ENOENT);
  char want[512];
  snprintf(want, sizeof(want), "TLS: certificate %s: No such file or directory",
           missing);
  CHECK_EQ_STR(e->log, want);

  cfg.tls_cert = live_crt;
  if (!CHECK_EQ_INT(wshub_server_new(&e->loop, &cfg, &e->server), 0))
    return;
  /* No plain listener is needed; a TLS one needs a context (it has one). */
  CHECK_EQ_INT(wshub_listen_tls(e->server, "127.0.0.1", 0, 0), 0);
  e->port = wshub_server_port(e->server);
  CHECK(e->port > 0);

  exchange(e);
  CHECK_EQ_STR(e->response, "HTTP/1.1 404 Not Found");
  CHECK_MEM(e->md, e->mdlen, md_a, len_a);

  /* Renewed files: reloaded, the next connection is served B. */
  copy_file(b_crt, live_crt);
  copy_file(b_key, live_key);
  CHECK_EQ_INT(wshub_tls_reload(e->server), 0);
  exchange(e);
  CHECK_EQ_STR(e->response, "HTTP/1.1 404 Not Found");
  CHECK_MEM(e->md, e->mdlen, md_b, len_b);

  /* A half-written renewal: the reload fails, B stays. */
  copy_file(a_crt, live_crt);
  copy_file(junk, live_key);
  e->log[0] = '\0';
  CHECK_EQ_INT(wshub_tls_reload(e->server), UV_EINVAL);
  snprintf(want, sizeof(want), "TLS: private key %s: not a PEM private key (",
           live_key);
  CHECK(strncmp(e->log, want, strlen(want)) == 0);
  CHECK(strstr(e->log, "(keeping the current certificate)") != NULL);
  exchange(e);
  CHECK_EQ_STR(e->response, "HTTP/1.1 404 Not Found");
  CHECK_MEM(e->md, e->mdlen, md_b, len_b);

  /* A context from wshub_tls_load, set directly. */
  wshub_tls_t *tls;
  CHECK_EQ_INT(wshub_tls_load(a_crt, a_key, &tls, NULL, 0), 0);
  CHECK_EQ_INT(wshub_server_set_tls(e->server, tls), 0);
  wshub_tls_free(tls); /* the server keeps its own reference */
  CHECK_EQ_INT(wshub_server_set_tls(e->server, NULL), UV_EINVAL);
  exchange(e);
  CHECK_MEM(e->md, e->mdlen, md_a, len_a);

  wshub_close(e->server, on_closed);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(e->closed, 1);
  CHECK_EQ_INT(uv_loop_close(&e->loop), 0);
}

/* A server without a context refuses TLS listeners. */
static void test_no_context(unit_t *T) {
  static env_t env;
  uv_loop_t loop;
  uv_loop_init(&loop);
  wshub_config_t cfg;
  wshub_config_init(&cfg);
  cfg.log_cb = env_log;
  cfg.log_user = &env;
  wshub_server_t *s;
  if (!CHECK_EQ_INT(wshub_server_new(&loop, &cfg, &s), 0))
    return;
  CHECK_EQ_INT(wshub_listen_tls(s, "127.0.0.1", 0, 0), UV_EINVAL);
  CHECK_EQ_INT(wshub_tls_reload(s), UV_EINVAL);
  CHECK_EQ_STR(env.log, "TLS: a certificate file and a key file are needed");
  wshub_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  unit_t t = {0, 0};
  unit_t *T = &t;
  snprintf(dir, sizeof(dir), "/tmp/wshub-unit-tls-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  char junk[128], enc[128], cmd[512];
  path_of(junk, sizeof(junk), "junk.pem");
  path_of(enc, sizeof(enc), "enc.key");
  FILE *f = fopen(junk, "w");
  if (f != NULL) {
    fputs("not PEM at all\n", f);
    fclose(f);
  }
  snprintf(cmd, sizeof(cmd),
           "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
           "-aes128 -pass pass:secret -out %s >/dev/null 2>&1",
           enc);
  if (make_cert("a") != 0 || make_cert("b") != 0 || system(cmd) != 0) {
    fprintf(stderr, "the openssl command failed\n");
    return 1;
  }
  test_load_errors(T);
  test_server(T);
  test_no_context(T);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
  return unit_finish(T);
}
