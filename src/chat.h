/* chat.h — the chat protocol (docs/PROTOCOL.md) on top of the public API.
 *
 * The chat is a client of wshub.h like any host application: it installs
 * on_open/on_message/on_close in a wshub_config_t and keeps its own state —
 * nicknames (per-client user data), per-room message ids and a history
 * ring of jansson message objects — in a wshub_chat_t that the caller
 * creates before the server and frees after wshub_close() completes.
 */
#ifndef WSHUB_CHAT_H
#define WSHUB_CHAT_H

#include <stddef.h>

#include "wshub.h"

/* The public part (wshub_chat_new, _install, _free and the config) is in
 * wshub.h. */

/* Pure helpers, exposed for unit tests. */
/* 1 if name is 1–64 bytes of A–Z a–z 0–9 . _ - */
int wshub_chat_room_valid(const char *name, size_t len);
/* 1 if nick is valid UTF-8 of 1–32 characters, none a control character
 * (U+0000–U+001F, U+007F–U+009F), not all blank. */
int wshub_chat_nick_valid(const char *nick, size_t len);
/* Finds `key` in the query string of a request-target and percent-decodes
 * its value ('+' is a space) into out. Returns the length, -1 if absent,
 * or -2 if present but longer than cap-1. */
int wshub_chat_query_param(const char *target, size_t len, const char *key,
                           char *out, size_t cap);

#endif
