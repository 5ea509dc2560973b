/* fuzz_harness.h — the loopback harness shared by wshub's libFuzzer targets.
 *
 * A target drives the real server: for every input it creates a fresh
 * wshub_server_t on one long-lived uv_loop_t (so nothing carries over from
 * one input to the next), hands it a duplicate of one listening socket on
 * 127.0.0.1 (wshub_listen_fd; the port stays the same), opens real TCP client
 * connections to it, writes scripted bytes through them, and pumps the loop
 * until the server has closed every connection and is idle again. Then it
 * closes the server and checks that every handle, request and descriptor
 * is back to where it was. Anything that does not settle within
 * FZ_DEADLINE_MS aborts with a message naming what was waited for, so a
 * hang in the server is reported like a crash.
 *
 * Ownership: fz_t owns the loop, the client sockets (and their uv_poll_t
 * handles), the temporary public directory it may create, and the server
 * between fz_start() and fz_finish(). The caller owns the wshub_config_t it
 * passes (copied by the server) and, in chat targets, the chat.
 */
#ifndef WSHUB_FUZZ_HARNESS_H
#define WSHUB_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "wshub.h"

/* A pump that has not reached its goal after this long aborts. */
#define FZ_DEADLINE_MS 3000
#define FZ_MAX_CLIENTS 2

typedef struct fz_s fz_t;
typedef struct fz_client_s fz_client_t;

/* What one client sends. Pointers are borrowed until the client is done. */
typedef struct {
  const uint8_t *pre; /* sent first */
  size_t pre_len;
  int wait_head;       /* then wait for a response head ("\r\n\r\n") */
  const uint8_t *body; /* then this */
  size_t body_len;
  size_t chunk; /* at most this many bytes per loop turn (0: no limit) */
  int hold;     /* do not half-close after the last byte (fz_release) */
} fz_script_t;

/* The loop, the SIGPIPE disposition, the fd baseline. `with_public`
 * creates a small public directory under $TMPDIR (or /tmp), removed by
 * fz_free(). Aborts on failure. */
fz_t *fz_new(int with_public);
void fz_free(fz_t *f);
/* The target's one harness: made by the first call (LLVMFuzzerInitialize),
 * the same one after that, freed at exit. */
fz_t *fz_once(int with_public);
/* wshub_config_init plus what every target runs its server with: debug
 * logging (formatted, then dropped; errors go to stderr), short header,
 * keep-alive and close timeouts, no keep-alive pings. */
void fz_config_init(wshub_config_t *cfg);
/* The public directory (NULL if none was made). */
const char *fz_public_dir(const fz_t *f);

/* A server with `cfg`, listening on the harness's 127.0.0.1 port. Aborts
 * on failure. */
wshub_server_t *fz_start(fz_t *f, const wshub_config_t *cfg);

/* Connects a client (blocking connect, then non-blocking I/O driven by the
 * loop) that follows `script`. */
fz_client_t *fz_connect(fz_t *f, const fz_script_t *script);
/* Pumps until the client has seen its response head, or is done. */
void fz_wait_head(fz_t *f, fz_client_t *c);
/* Pumps until the client has sent everything it was given. */
void fz_wait_sent(fz_t *f, fz_client_t *c);
/* The status code of the first response head, 0 if none was seen. */
int fz_status(const fz_client_t *c);
/* Bytes received so far. */
size_t fz_received(const fz_client_t *c);
/* Half-closes a held client once it has sent its bytes. */
void fz_release(fz_t *f, fz_client_t *c);

/* Pumps until every client has seen the server close and the server has no
 * connection, request or handle beyond its own; then closes the server and
 * checks that the loop and the descriptor table are back to the baseline. */
void fz_finish(fz_t *f);

/* Turns one loop iteration (used by targets between steps). */
void fz_turn(fz_t *f);

/* Builds a masked client frame (mask key fixed) of opcode byte b0 (FIN,
 * RSV and opcode as on the wire) into out, which must hold len + 14 bytes;
 * returns the frame's size. */
size_t fz_frame(uint8_t b0, const uint8_t *payload, size_t len, uint8_t *out);

/* The opening handshake request for `target` (NUL-terminated, sent as is)
 * with `extra` header lines (each ending in CRLF; NULL for none) into out;
 * returns its length or 0 if cap is too small. */
size_t fz_upgrade_request(const char *target, const char *extra, char *out,
                          size_t cap);

#endif
