/* request.c — read-only helpers over a parsed HTTP request.
 *
 * The request and every string in it are borrowed from http.c (see
 * request.h); these helpers only look, never copy, allocate or keep a
 * pointer beyond the call. Header names and list tokens compare ASCII
 * case-insensitively, independent of the C locale.
 */
#include "request.h"

#include <string.h>

static int request_lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int request_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (request_lower((unsigned char)a[i]) !=
        request_lower((unsigned char)b[i]))
      return 0;
  }
  return 1;
}

static int request_is_ows(char c) {
  return c == ' ' || c == '\t';
}

const char *wshub_request_header(const wshub_request_t *req, const char *name,
                                 size_t *len) {
  size_t name_len = strlen(name);
  for (size_t i = 0; i < req->nheaders; i++) {
    const wshub_header_t *h = &req->headers[i];
    if (h->name_len == name_len && request_ieq(h->name, name, name_len)) {
      if (len != NULL)
        *len = h->value_len;
      return h->value;
    }
  }
  return NULL;
}

int wshub_header_has_token(const char *value, size_t len, const char *token) {
  size_t token_len = strlen(token);
  size_t i = 0;
  if (value == NULL || token_len == 0)
    return 0;
  while (i < len) {
    size_t start, end;
    while (i < len && (request_is_ows(value[i]) || value[i] == ','))
      i++;
    start = i;
    while (i < len && value[i] != ',')
      i++;
    end = i;
    while (end > start && request_is_ows(value[end - 1]))
      end--;
    if (end - start == token_len &&
        request_ieq(value + start, token, token_len))
      return 1;
  }
  return 0;
}

int wshub_hex_digit(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}
