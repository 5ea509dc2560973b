/* chatbus.h — delivering the chat's output to clients on the right loop,
 * in one global order.
 *
 * With one loop (nthreads == 0) every operation runs at once on the
 * calling server. With N loops (--threads N) every operation is appended,
 * while the chat holds its lock, to the inbox of each other thread it
 * concerns and run there by that loop's uv_async_t callback, in inbox
 * order; on the calling thread it runs at once, right after that thread's
 * own inbox is drained. So a room's messages reach every member in id
 * order, a client's own copy never overtakes the messages before it (nor a
 * close frame it sends next), and a join takes effect exactly after the
 * messages its welcome history already covered.
 *
 * Frames are shared between threads (atomic reference counts, buf.h).
 * Which thread a client lives on is read from its id (wshub_config_t
 * id_first/id_step). The bus owns queued items and their frame references.
 */
#ifndef WSHUB_CHATBUS_H
#define WSHUB_CHATBUS_H

#include <stddef.h>

#include "buf.h"
#include "wshub.h"

typedef struct chat_bus_s chat_bus_t;

/* nthreads 0: direct mode. NULL if out of memory. */
chat_bus_t *chat_bus_new(unsigned nthreads);
/* Frees the bus; every thread must be detached. */
void chat_bus_free(chat_bus_t *bus);
unsigned chat_bus_threads(const chat_bus_t *bus);

/* Threaded mode, on thread `index`'s loop before it runs: serve `server`. */
int chat_bus_attach(chat_bus_t *bus, unsigned index, uv_loop_t *loop,
                    wshub_server_t *server);
/* Threaded mode, on that loop: stop delivering there (pending items are
 * dropped) and close the async handle. */
void chat_bus_detach(chat_bus_t *bus, unsigned index);

/* Client ids are "c<n>"; with Redis, n - 1 carries the node's number from
 * this bit up (chat.c). */
#define WSHUB_CHAT_NODE_SHIFT 40

/* The thread of a client id ("c<n>"): the low 40 bits of n - 1 modulo
 * nthreads; 0 if direct. */
unsigned chat_bus_thread_of(const chat_bus_t *bus, const char *id);

/* `from` is the server of the calling thread. `except` is a client id or
 * NULL. Each call takes its own reference to frame. */
void chat_bus_room(chat_bus_t *bus, wshub_server_t *from, const char *room,
                   wshub_buf_t *frame, const char *except);
void chat_bus_to(chat_bus_t *bus, wshub_server_t *from, const char *id,
                 wshub_buf_t *frame);
/* Hub membership of client `id` (delivery only; the chat keeps the truth).
 * A join on the caller's own thread (the chat only joins the client that
 * asked) takes effect at once and returns 0 or UV_ENOMEM. */
int chat_bus_join(chat_bus_t *bus, wshub_server_t *from, const char *id,
                  const char *room);
void chat_bus_leave(chat_bus_t *bus, wshub_server_t *from, const char *id,
                    const char *room);

#endif
