/* tls.c — OpenSSL contexts from PEM files and the per-connection engine
 * over memory BIOs (see tls.h). */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3's are all AEAD
 * (OpenSSL's defaults). */
#define TLS_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

static SSL_CTX *tls_ctx(wshub_tls_t *t) {
  return (SSL_CTX *)(void *)t;
}

/* OpenSSL's reason for the oldest error queued on this thread (the root
 * cause), or `fallback`; clears the queue. */
static const char *tls_reason(const char *fallback) {
  unsigned long e = ERR_get_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  ERR_clear_error();
  return r != NULL ? r : fallback;
}

/* Never prompts for a passphrase: an encrypted key is refused. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *user) {
  (void)buf;
  (void)size;
  (void)rwflag;
  *(int *)user = 1;
  return -1;
}

/* Opens path for reading, or says why not. */
static FILE *tls_open(const char *what, const char *path, char *err,
                      size_t errlen, int *rc) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    *rc = -errno;
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
  }
  return f;
}

static int tls_configure(SSL_CTX *ctx) {
  long opts = SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
#ifdef SSL_OP_NO_RENEGOTIATION
  opts |= SSL_OP_NO_RENEGOTIATION;
#endif
  SSL_CTX_set_options(ctx, opts);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS) != 1)
    return -1;
  /* Idle connections give their record buffers back. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* Resumption by tickets only: no cache to lock and grow. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return 0;
}

int wshub_tls_load(const char *cert, const char *key, wshub_tls_t **out,
                   char *err, size_t errlen) {
  char dummy[8];
  if (err == NULL || errlen == 0)
    err = dummy, errlen = sizeof(dummy);
  err[0] = '\0';
  *out = NULL;
  if (cert == NULL || key == NULL || cert[0] == '\0' || key[0] == '\0') {
    snprintf(err, errlen, "a certificate file and a key file are needed");
    return UV_EINVAL;
  }
  int rc = 0;
  /* Readable at all: the system's reason (no such file, permission). */
  FILE *f = tls_open("certificate", cert, err, errlen, &rc);
  if (f == NULL)
    return rc;
  fclose(f);
  f = tls_open("private key", key, err, errlen, &rc);
  if (f == NULL)
    return rc;

  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL || tls_configure(ctx) != 0) {
    fclose(f);
    SSL_CTX_free(ctx);
    snprintf(err, errlen, "cannot set up TLS: %s", tls_reason("out of memory"));
    return UV_ENOMEM;
  }
  int encrypted = 0;
  SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, &encrypted);
  EVP_PKEY *pkey = NULL;
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    snprintf(err, errlen, "certificate %s: not a PEM certificate (%s)", cert,
             tls_reason("unreadable"));
    rc = UV_EINVAL;
  } else if ((pkey = PEM_read_PrivateKey(f, NULL, tls_no_passphrase,
                                         &encrypted)) == NULL) {
    const char *why = tls_reason("unreadable");
    if (encrypted)
      snprintf(err, errlen,
               "private key %s: encrypted with a passphrase, which is not "
               "supported",
               key);
    else
      snprintf(err, errlen, "private key %s: not a PEM private key (%s)", key,
               why);
    rc = UV_EINVAL;
  } else if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "private key %s does not match certificate %s", key,
             cert);
    rc = UV_EINVAL;
  }
  EVP_PKEY_free(pkey);
  fclose(f);
  SSL_CTX_set_default_passwd_cb(ctx, NULL);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (rc != 0) {
    SSL_CTX_free(ctx);
    return rc;
  }
  *out = (wshub_tls_t *)(void *)ctx;
  return 0;
}

void wshub_tls_free(wshub_tls_t *tls) {
  SSL_CTX_free(tls_ctx(tls));
}

wshub_tls_t *wshub_tls_ref(wshub_tls_t *tls) {
  if (tls != NULL)
    SSL_CTX_up_ref(tls_ctx(tls));
  return tls;
}

wshub_tls_conn_t *wshub_tls_conn_new(wshub_tls_t *tls) {
  wshub_tls_conn_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->ssl = SSL_new(tls_ctx(tls));
  BIO *rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || rbio == NULL || t->wbio == NULL) {
    BIO_free(rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  /* An empty BIO means "more to come", not end of stream. */
  BIO_set_mem_eof_return(rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, rbio, t->wbio); /* the SSL owns both */
  SSL_set_accept_state(t->ssl);
  return t;
}

void wshub_tls_conn_free(wshub_tls_conn_t *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl);
  free(t->out);
  free(t);
}

int wshub_tls_conn_feed(wshub_tls_conn_t *t, const void *data, size_t len) {
  size_t n = 0;
  if (len == 0)
    return 0;
  if (BIO_write_ex(SSL_get_rbio(t->ssl), data, len, &n) != 1 || n != len) {
    ERR_clear_error();
    return UV_ENOMEM;
  }
  return 0;
}

int wshub_tls_conn_read(wshub_tls_conn_t *t, char *buf, size_t cap,
                        size_t *got) {
  /* Nothing fed and nothing buffered: no need to ask OpenSSL. */
  if (BIO_ctrl_pending(SSL_get_rbio(t->ssl)) == 0 && !SSL_has_pending(t->ssl))
    return WSHUB_TLS_WANT;
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_read_ex(t->ssl, buf, cap, &n);
  if (r == 1) {
    *got = n;
    return 1;
  }
  switch (SSL_get_error(t->ssl, r)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    return WSHUB_TLS_WANT;
  case SSL_ERROR_ZERO_RETURN:
    return WSHUB_TLS_CLOSED;
  default:
    return UV_EPROTO;
  }
}

int wshub_tls_conn_write(wshub_tls_conn_t *t, const void *p, size_t len) {
  ERR_clear_error();
  size_t n = 0;
  if (SSL_write_ex(t->ssl, p, len, &n) != 1 || n != len) {
    ERR_clear_error();
    return UV_EPROTO;
  }
  return 0;
}

size_t wshub_tls_conn_pending(const wshub_tls_conn_t *t) {
  return BIO_ctrl_pending(t->wbio);
}

size_t wshub_tls_conn_take(wshub_tls_conn_t *t, char *dst, size_t cap) {
  size_t n = 0;
  if (cap == 0 || BIO_read_ex(t->wbio, dst, cap, &n) != 1)
    return 0;
  return n;
}

int wshub_tls_conn_done(const wshub_tls_conn_t *t) {
  return SSL_is_init_finished(t->ssl);
}

void wshub_tls_conn_shutdown(wshub_tls_conn_t *t) {
  if (t->notified || !SSL_is_init_finished(t->ssl))
    return;
  t->notified = 1;
  ERR_clear_error();
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

void wshub_tls_conn_describe(const wshub_tls_conn_t *t, char *buf, size_t len) {
  snprintf(buf, len, "%s %s", SSL_get_version(t->ssl),
           SSL_get_cipher_name(t->ssl));
}

void wshub_tls_conn_why(char *buf, size_t len) {
  snprintf(buf, len, "%s", tls_reason("connection broken"));
}
