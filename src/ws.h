/* ws.h — a WebSocket session on a connection, driven by wslay's event API.
 *
 * After the 101 response, the connection's proto_data becomes a
 * wshub_ws_t (allocated and freed by ws.c) holding the wslay context.
 * wslay parses and validates every inbound frame (masking, RSV bits,
 * opcodes, control frame rules, UTF-8 of text and close reasons, message
 * size) and produces control frames (pong, close); data frames go out
 * through frame.c so a message is framed once. Every outbound byte goes
 * through the connection's single ordered write queue.
 *
 * With permessage-deflate negotiated, wslay lets RSV1 through on the first
 * frame of a data message (and fails it anywhere else, 1002); ws.c inflates
 * such messages (deflate.c) and validates their UTF-8 itself, and sends
 * the compressed alternative of each outbound data frame.
 */
#ifndef WSHUB_WS_H
#define WSHUB_WS_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "pmd.h"
#include "request.h"

typedef struct wshub_ws_s wshub_ws_t;

/* 1 if an Upgrade for this request-target is accepted by the configured
 * WebSocket paths (all paths when none are configured). */
int wshub_ws_path_allowed(wshub_server_t *s, const char *target, size_t len);

/* A session for connection c, with its hub client registered, not yet
 * reading: the caller queues the 101, runs the application's on_open, then
 * either starts or discards it. `pmd` (copied) is the negotiated
 * permessage-deflate, NULL for none. NULL if out of memory. */
wshub_ws_t *wshub_ws_new(wshub_conn_t *c, const wshub_pmd_t *pmd);
wshub_client_t *wshub_ws_client(const wshub_ws_t *ws);
/* The connection now speaks WebSocket; `rest` holds bytes that arrived
 * after the request (parsed as frames at once, then freed by the caller). */
void wshub_ws_start(wshub_ws_t *ws, const char *rest, size_t rest_len);
/* The upgrade was refused: unregister and free, no on_close. */
void wshub_ws_discard(wshub_ws_t *ws);

/* The client is too slow to keep up: disconnect it at the end of this loop
 * turn (not now: the caller may be walking a member list). */
void wshub_ws_drop_slow(wshub_ws_t *ws);
/* The same for any reason (e.g. 1011 when a frame owed to the client
 * could not be queued): a best-effort close frame, written without
 * allocating, then the connection goes at the end of the loop turn. */
void wshub_ws_drop(wshub_ws_t *ws, uint16_t code, const char *reason);

/* Sends a prebuilt frame (frame.c). UV_ECANCELED once closing. */
int wshub_ws_send_frame(wshub_ws_t *ws, wshub_buf_t *frame);

/* Starts the closing handshake with code and reason. */
void wshub_ws_close(wshub_ws_t *ws, uint16_t code, const char *reason);

#endif
