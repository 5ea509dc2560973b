/* test_pmd.c — unit tests of pmd.c, permessage-deflate negotiation.
 *
 * Each case is a list of Sec-WebSocket-Extensions header values and a
 * client-window setting, and the exact outcome: -1 (malformed: 400), 0 (no
 * offer accepted: no header) or the exact response value. Offers follow
 * RFC 7692 §7.1: unknown, repeated or badly valued parameters decline an
 * offer and the next one is tried; the grammar is RFC 6455 §9.1.
 */
#include <string.h>

#include "pmd.h"
#include "unit.h"
#include "unit_req.h"

#define NCT "permessage-deflate; server_no_context_takeover"
#define CNCT "; client_no_context_takeover"

typedef struct {
  const char *h[3];     /* header values, NULL-terminated */
  unsigned window;      /* --deflate-client-window */
  int want;             /* -1, 0 or 1 */
  const char *response; /* when want is 1 */
  int server_bits, client_bits;
} pmd_case_t;

static void run_case(unit_t *T, const pmd_case_t *c, size_t idx) {
  char lines[3][256];
  const char *ptrs[6] = {"Host: x", NULL};
  size_t n = 1;
  for (size_t i = 0; i < 3 && c->h[i] != NULL; i++) {
    snprintf(lines[i], sizeof(lines[i]), "Sec-WebSocket-Extensions: %s",
             c->h[i]);
    ptrs[n++] = lines[i];
  }
  ptrs[n] = NULL;
  req_store_t st;
  const wshub_request_t *r = req_build(&st, 1, 1, 1, ptrs);
  wshub_pmd_t p;
  memset(&p, 0xee, sizeof(p));
  int got = wshub_pmd_negotiate(r, c->window, &p);
  if (!CHECK_EQ_INT(got, c->want)) {
    fprintf(stderr, "  case %zu: %s\n", idx, c->h[0] ? c->h[0] : "(none)");
    return;
  }
  if (got != 1)
    return;
  char buf[WSHUB_PMD_RESPONSE_MAX];
  size_t len = wshub_pmd_response(&p, buf, sizeof(buf));
  CHECK_EQ_INT(len, strlen(c->response));
  if (!CHECK_EQ_STR(buf, c->response))
    fprintf(stderr, "  case %zu: %s\n", idx, c->h[0]);
  CHECK_EQ_INT(p.server_bits, c->server_bits);
  CHECK_EQ_INT(p.client_bits, c->client_bits);
}

static const pmd_case_t cases[] = {
    /* No offer, other extensions only. */
    {{NULL}, 0, 0, NULL, 0, 0},
    {{"x-webkit-deflate-frame"}, 0, 0, NULL, 0, 0},
    {{"foo; bar=1, baz"}, 0, 0, NULL, 0, 0},
    /* Plain offers: the server always says both no_context_takeover. */
    {{"permessage-deflate"}, 0, 1, NCT CNCT, 15, 0},
    {{"Permessage-Deflate"}, 0, 1, NCT CNCT, 15, 0},
    {{"permessage-deflate; client_max_window_bits"}, 0, 1, NCT CNCT, 15, 0},
    {{"permessage-deflate; client_no_context_takeover; client_max_window_bits"},
     0,
     1,
     NCT CNCT,
     15,
     0},
    {{"permessage-deflate;server_no_context_takeover"}, 0, 1, NCT CNCT, 15, 0},
    /* server_max_window_bits is honoured and echoed. */
    {{"permessage-deflate; server_max_window_bits=9"},
     0,
     1,
     NCT "; server_max_window_bits=9" CNCT,
     9,
     0},
    {{"permessage-deflate; server_max_window_bits=8"},
     0,
     1,
     NCT "; server_max_window_bits=8" CNCT,
     8,
     0},
    {{"permessage-deflate; server_max_window_bits=15"},
     0,
     1,
     NCT "; server_max_window_bits=15" CNCT,
     15,
     0},
    {{"permessage-deflate; server_max_window_bits=\"10\""},
     0,
     1,
     NCT "; server_max_window_bits=10" CNCT,
     10,
     0},
    {{"permessage-deflate ; server_max_window_bits = 12 ; "
      "server_no_context_takeover"},
     0,
     1,
     NCT "; server_max_window_bits=12" CNCT,
     12,
     0},
    /* Declined offers: the next one is taken, or none. */
    {{"permessage-deflate; server_max_window_bits=7, permessage-deflate"},
     0,
     1,
     NCT CNCT,
     15,
     0},
    {{"permessage-deflate; server_max_window_bits=16"}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits=010"}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits=1x"}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits"}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits=\"\""}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits=\"123456789\""},
     0,
     0,
     NULL,
     0,
     0},
    {{"permessage-deflate; client_max_window_bits=16"}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; client_max_window_bits=\"a b\""}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_no_context_takeover=1"}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; client_no_context_takeover=\"\""}, 0, 0, NULL, 0, 0},
    {{"permessage-deflate; server_no_context_takeover; "
      "server_no_context_takeover"},
     0,
     0,
     NULL,
     0,
     0},
    {{"permessage-deflate; client_max_window_bits; client_max_window_bits=9"},
     0,
     0,
     NULL,
     0,
     0},
    {{"permessage-deflate; server_max_window_bits=9; server_max_window_bits=9"},
     0,
     0,
     NULL,
     0,
     0},
    {{"permessage-deflate; mystery"}, 0, 0, NULL, 0, 0},
    /* Autobahn 13.7: three offers in preference order. */
    {{"permessage-deflate; client_no_context_takeover; client_max_window_bits;"
      " server_no_context_takeover; server_max_window_bits=9, "
      "permessage-deflate; client_no_context_takeover; "
      "client_max_window_bits; server_no_context_takeover, "
      "permessage-deflate; client_no_context_takeover; "
      "client_max_window_bits"},
     0,
     1,
     NCT "; server_max_window_bits=9" CNCT,
     9,
     0},
    /* Several headers are one list; the first acceptable offer wins. */
    {{"x-foo", "permessage-deflate; bogus",
      "permessage-deflate; "
      "server_max_window_bits=11"},
     0,
     1,
     NCT "; server_max_window_bits=11" CNCT,
     11,
     0},
    /* Empty list elements are tolerated. */
    {{", ,permessage-deflate,"}, 0, 1, NCT CNCT, 15, 0},
    /* Malformed: the whole handshake is refused, even after an accepted
     * offer. */
    {{"permessage-deflate;;"}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate; =9"}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits="}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate; server_max_window_bits=\"9"}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate x"}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate, ;x"}, 0, -1, NULL, 0, 0},
    {{"\"permessage-deflate\""}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate", "foo; a=b c"}, 0, -1, NULL, 0, 0},
    {{"permessage-deflate; a=\"\x01\""}, 0, -1, NULL, 0, 0},
    /* A client window: context takeover where the offer allows it. */
    {{"permessage-deflate; client_max_window_bits"},
     10,
     1,
     NCT "; client_max_window_bits=10",
     15,
     10},
    {{"permessage-deflate; client_max_window_bits=9"},
     10,
     1,
     NCT "; client_max_window_bits=9",
     15,
     9},
    {{"permessage-deflate; client_max_window_bits=15"},
     15,
     1,
     NCT "; client_max_window_bits=15",
     15,
     15},
    {{"permessage-deflate; client_no_context_takeover; client_max_window_bits"},
     10,
     1,
     NCT CNCT,
     15,
     0},
    {{"permessage-deflate"}, 10, 1, NCT CNCT, 15, 0},
    {{"permessage-deflate"}, 15, 1, NCT, 15, 15},
    {{"permessage-deflate; server_max_window_bits=10; client_max_window_bits"},
     8,
     1,
     NCT "; server_max_window_bits=10; client_max_window_bits=8",
     10,
     8},
    /* An out-of-range setting counts as 0. */
    {{"permessage-deflate; client_max_window_bits"}, 5, 1, NCT CNCT, 15, 0},
};

static void test_response_cap(unit_t *T) {
  wshub_pmd_t p = {15, 1, 12, 1};
  char small[20], big[WSHUB_PMD_RESPONSE_MAX];
  CHECK_EQ_INT(wshub_pmd_response(&p, small, sizeof(small)), 0);
  size_t n = wshub_pmd_response(&p, big, sizeof(big));
  CHECK_EQ_STR(big, NCT "; server_max_window_bits=15; "
                        "client_max_window_bits=12");
  CHECK_EQ_INT(n, strlen(big));
}

int main(void) {
  unit_t t = {0}, *T = &t;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    run_case(T, &cases[i], i);
  test_response_cap(T);
  return unit_finish(T);
}
