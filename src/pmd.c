/* pmd.c — permessage-deflate negotiation (see pmd.h).
 *
 * The Sec-WebSocket-Extensions headers are read as one comma list of
 * extensions, each `name *(";" param)`, a param being `token ["=" (token |
 * quoted-string)]` (RFC 6455 §9.1, with OWS around separators and empty
 * list elements tolerated as RFC 9110 §5.6.1 allows). The whole list is
 * checked, also past the accepted offer, so a malformed header is always
 * reported. Nothing here allocates.
 */
#include "pmd.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PMD_NAME "permessage-deflate"

/* An offer's parameters as far as they are read. */
typedef struct {
  int bad;        /* decline this offer */
  int server_nct; /* server_no_context_takeover */
  int client_nct; /* client_no_context_takeover */
  int server_bits;
  int client_bits; /* 15 when given without a value */
  int client_bits_seen;
} pmd_offer_t;

/* A cursor over one header value. */
typedef struct {
  const char *p;
  size_t len, i;
} pmd_cur_t;

static int pmd_is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void pmd_ows(pmd_cur_t *k) {
  while (k->i < k->len && (k->p[k->i] == ' ' || k->p[k->i] == '\t'))
    k->i++;
}

static int pmd_at(const pmd_cur_t *k, char c) {
  return k->i < k->len && k->p[k->i] == c;
}

/* A token; its length, 0 if there is none. */
static size_t pmd_token(pmd_cur_t *k, const char **tok) {
  *tok = k->p + k->i;
  size_t start = k->i;
  while (k->i < k->len && pmd_is_tchar((unsigned char)k->p[k->i]))
    k->i++;
  return k->i - start;
}

/* A quoted-string, unescaped into val (cut short past cap, which makes the
 * value invalid but not the syntax). Returns its unescaped length, or -1 on
 * a syntax error. */
static long pmd_quoted(pmd_cur_t *k, char *val, size_t cap) {
  size_t n = 0;
  k->i++; /* the opening quote */
  while (k->i < k->len) {
    unsigned char c = (unsigned char)k->p[k->i++];
    if (c == '"')
      return (long)n;
    if (c == '\\') {
      if (k->i == k->len)
        return -1;
      c = (unsigned char)k->p[k->i++];
      if (c != '\t' && (c < 0x20 || c == 0x7f))
        return -1;
    } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
      return -1; /* CTLs are not qdtext */
    }
    if (n < cap)
      val[n] = (char)c;
    n++;
  }
  return -1; /* unterminated */
}

/* A window size: "8".."15", no leading zeros; else 0. */
static int pmd_bits(const char *v, size_t len) {
  if (len == 1 && v[0] >= '8' && v[0] <= '9')
    return v[0] - '0';
  if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
    return 10 + (v[1] - '0');
  return 0;
}

static int pmd_name_is(const char *p, size_t len, const char *name) {
  return strlen(name) == len && strncasecmp(p, name, len) == 0;
}

/* Applies one parameter to an offer; has_value tells `name` from
 * `name=value`. */
static void pmd_param(pmd_offer_t *o, const char *name, size_t nlen,
                      int has_value, const char *val, size_t vlen) {
  if (pmd_name_is(name, nlen, "server_no_context_takeover")) {
    if (o->server_nct || has_value)
      o->bad = 1;
    o->server_nct = 1;
  } else if (pmd_name_is(name, nlen, "client_no_context_takeover")) {
    if (o->client_nct || has_value)
      o->bad = 1;
    o->client_nct = 1;
  } else if (pmd_name_is(name, nlen, "server_max_window_bits")) {
    int b = has_value ? pmd_bits(val, vlen) : 0;
    if (o->server_bits || b == 0)
      o->bad = 1;
    o->server_bits = b ? b : -1;
  } else if (pmd_name_is(name, nlen, "client_max_window_bits")) {
    int b = has_value ? pmd_bits(val, vlen) : 15;
    if (o->client_bits_seen || b == 0)
      o->bad = 1;
    o->client_bits_seen = 1;
    o->client_bits = b;
  } else {
    o->bad = 1; /* not a parameter of this extension */
  }
}

/* Settles an acceptable offer into the parameters wshub answers with. */
static void pmd_accept(const pmd_offer_t *o, unsigned client_window,
                       wshub_pmd_t *out) {
  memset(out, 0, sizeof(*out));
  out->server_bits = (uint8_t)(o->server_bits > 0 ? o->server_bits : 15);
  out->server_said = o->server_bits > 0;
  if (client_window == 0 || o->client_nct)
    return; /* client_bits 0: client_no_context_takeover */
  if (o->client_bits_seen) {
    unsigned b = (unsigned)o->client_bits;
    out->client_bits = (uint8_t)(b < client_window ? b : client_window);
    out->client_said = 1;
  } else if (client_window == 15) {
    out->client_bits = 15; /* the client's default window, unsaid */
  }
}

/* Reads one header value's list. Returns -1 on a syntax error, else 0;
 * *done is set once an offer has been accepted. */
static int pmd_list(const char *v, size_t len, unsigned client_window,
                    wshub_pmd_t *out, int *done) {
  pmd_cur_t k = {v, len, 0};
  for (;;) {
    pmd_ows(&k);
    if (k.i == k.len)
      return 0;
    if (pmd_at(&k, ',')) {
      k.i++; /* an empty element */
      continue;
    }
    const char *name;
    size_t nlen = pmd_token(&k, &name);
    if (nlen == 0)
      return -1;
    pmd_offer_t o;
    memset(&o, 0, sizeof(o));
    pmd_ows(&k);
    while (pmd_at(&k, ';')) {
      k.i++;
      pmd_ows(&k);
      const char *pname, *val = NULL;
      size_t pnlen = pmd_token(&k, &pname), vlen = 0;
      char qbuf[8];
      int has_value = 0;
      if (pnlen == 0)
        return -1;
      pmd_ows(&k);
      if (pmd_at(&k, '=')) {
        k.i++;
        pmd_ows(&k);
        has_value = 1;
        if (pmd_at(&k, '"')) {
          long q = pmd_quoted(&k, qbuf, sizeof(qbuf));
          if (q < 0)
            return -1;
          /* The unquoted value must still be a token (§9.1). */
          vlen = (size_t)q;
          val = qbuf;
          if (vlen == 0 || vlen > sizeof(qbuf))
            o.bad = 1;
          for (size_t j = 0; j < vlen && j < sizeof(qbuf); j++)
            if (!pmd_is_tchar((unsigned char)qbuf[j]))
              o.bad = 1;
        } else if ((vlen = pmd_token(&k, &val)) == 0) {
          return -1;
        }
        pmd_ows(&k);
      }
      if (!o.bad)
        pmd_param(&o, pname, pnlen, has_value, val, vlen);
    }
    if (k.i < k.len && !pmd_at(&k, ','))
      return -1;
    if (!*done && !o.bad && pmd_name_is(name, nlen, PMD_NAME)) {
      pmd_accept(&o, client_window, out);
      *done = 1;
    }
  }
}

int wshub_pmd_negotiate(const wshub_request_t *req, unsigned client_window,
                        wshub_pmd_t *out) {
  int done = 0;
  if (client_window != 0 && (client_window < 8 || client_window > 15))
    client_window = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const wshub_header_t *h = &req->headers[i];
    if (!pmd_name_is(h->name, h->name_len, "Sec-WebSocket-Extensions"))
      continue;
    if (pmd_list(h->value, h->value_len, client_window, out, &done) != 0)
      return -1;
  }
  return done;
}

size_t wshub_pmd_response(const wshub_pmd_t *p, char *buf, size_t cap) {
  char server[40] = "", client[40] = "";
  if (p->server_said)
    snprintf(server, sizeof(server), "; server_max_window_bits=%u",
             (unsigned)p->server_bits);
  if (p->client_bits == 0)
    snprintf(client, sizeof(client), "; client_no_context_takeover");
  else if (p->client_said)
    snprintf(client, sizeof(client), "; client_max_window_bits=%u",
             (unsigned)p->client_bits);
  int n = snprintf(buf, cap, PMD_NAME "; server_no_context_takeover%s%s",
                   server, client);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
