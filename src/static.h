/* static.h — files under the public root.
 *
 * The pure part (path resolution, MIME types) is separate from the serving
 * part so it can be unit tested. Serving reads files with libuv's
 * threadpool in fixed chunks queued on the connection, never whole into
 * memory; the file descriptor belongs to the static response and is closed
 * when it ends, whatever way the connection ends.
 */
#ifndef WSHUB_STATIC_H
#define WSHUB_STATIC_H

#include <stddef.h>

#include "request.h"

/* Maps a raw request-target to a path relative to the public root.
 *  - query ("?...") and fragment ("#...") are dropped;
 *  - absolute-form "http://host/p" / "https://host/p" is reduced to "/p";
 *  - any other target not starting with '/' → UV_EINVAL;
 *  - percent-escapes are decoded; a malformed escape → UV_EINVAL;
 *  - a decoded NUL, an encoded slash (%2f/%2F) or backslash (%5c/%5C),
 *    a ".." segment (literal or encoded), or a segment starting with '.'
 *    other than ".well-known" → UV_ENOENT (the caller answers 404);
 *  - empty and "." segments are dropped (so "//a/./b" → "a/b");
 *  - "/" → "index.html"; a trailing slash "/d/" → "d/index.html";
 *  - result longer than cap-1 → UV_ENAMETOOLONG.
 * On success writes the NUL-terminated relative path (never starting with
 * '/') to out and returns its length. */
int wshub_static_resolve(const char *target, size_t len, char *out, size_t cap);

/* Content-Type for a path, from its extension (case-insensitive):
 * html/htm "text/html; charset=utf-8", js/mjs "text/javascript;
 * charset=utf-8", css "text/css; charset=utf-8", json and map
 * "application/json", txt "text/plain; charset=utf-8", png "image/png",
 * jpg/jpeg "image/jpeg", gif "image/gif", svg "image/svg+xml", ico
 * "image/x-icon", webp "image/webp", woff "font/woff", woff2 "font/woff2",
 * otf "font/otf", ttf "font/ttf", wasm "application/wasm", xml
 * "application/xml", webmanifest "application/manifest+json";
 * anything else "application/octet-stream". Never NULL. */
const char *wshub_static_mime(const char *path);

/* Serving (static.c, on a connection's loop). */
typedef struct wshub_http_s wshub_http_t;
typedef struct wshub_static_resp_s wshub_static_resp_t;

/* Answers a GET/HEAD request from the public root. Responds at once (404,
 * 405, …) or starts an asynchronous response and stores it in *out; the
 * response calls wshub_http_finish() when its last byte is queued, after
 * which *out must no longer be used. */
void wshub_static_serve(wshub_http_t *h, const wshub_request_t *req,
                        wshub_static_resp_t **out);
/* The connection went away: the response frees itself when its pending
 * file operation returns. */
void wshub_static_detach(wshub_static_resp_t *r);
/* A write completed: queue more of the file if the backlog is low. */
void wshub_static_on_written(wshub_static_resp_t *r);
#endif
