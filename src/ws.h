/* ws.h — a WebSocket session on a connection, driven by wslay's event API.
 *
 * After the 101 response, the connection's proto_data becomes a
 * wshub_ws_t (allocated and freed by ws.c) holding the wslay context.
 * wslay parses and validates every inbound frame (masking, RSV bits,
 * opcodes, control frame rules, UTF-8 of text and close reasons, message
 * size) and produces control frames (pong, close); data frames go out
 * through frame.c so a message is framed once. Every outbound byte goes
 * through the connection's single ordered write queue.
 */
#ifndef WSHUB_WS_H
#define WSHUB_WS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "request.h"

typedef struct wshub_ws_s wshub_ws_t;

/* 1 if an Upgrade for this request-target is accepted by the configured
 * WebSocket paths (all paths when none are configured). */
int wshub_ws_path_allowed(wshub_server_t *s, const char *target,
                          size_t len);

/* Turns the connection into a WebSocket session. The 101 response is
 * already queued; `rest` holds bytes that arrived after the request (they
 * are parsed as frames at once). The request is only borrowed. */
int wshub_ws_attach(wshub_conn_t *c, const wshub_request_t *req,
                    const char *protocol, const char *rest, size_t rest_len);

/* Sends a prebuilt frame (frame.c). UV_ECANCELED once closing. */
int wshub_ws_send_frame(wshub_ws_t *ws, wshub_buf_t *frame);

/* Starts the closing handshake with code and reason. */
void wshub_ws_close(wshub_ws_t *ws, uint16_t code, const char *reason);

#endif
