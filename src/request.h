/* request.h — the parsed HTTP request as the rest of wshub sees it.
 *
 * http.c fills a wshub_request_t from llhttp callbacks; every pointer in it
 * points into the connection's own header buffer and stays valid only until
 * the response to that request has been started. Readers (router, static
 * files, WebSocket handshake) borrow it and never free anything in it.
 */
#ifndef WSHUB_REQUEST_H
#define WSHUB_REQUEST_H

#include <stddef.h>

#include "wshub.h"

/* 1 if the comma-separated header value contains `token` as one of its
 * elements (case-insensitive, optional whitespace around commas), else 0. */
int wshub_header_has_token(const char *value, size_t len, const char *token);

/* The value of a hexadecimal digit (percent-escapes), or -1. */
int wshub_hex_digit(int ch);

#endif
