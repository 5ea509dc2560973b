/* test_oom.c — allocation failure injection (issue 7): every allocation
 * failure path answers the one client concerned with a clean error and
 * leaves the server consistent.
 *
 * The allocator. This executable is linked with -Wl,--wrap for malloc,
 * calloc, realloc, free, strdup and strndup, which redirects every such
 * call made by the statically linked libwshub objects (and by this file)
 * to the __wrap_ functions below. jansson is routed through the same
 * functions with json_set_alloc_funcs(), libuv with uv_replace_allocator()
 * and OpenSSL with CRYPTO_set_mem_functions(), each before its first use.
 * libwslay is a shared library that has no allocator hook: its GOT
 * entries for malloc, calloc, realloc and free are pointed at ours at
 * start-up (got_hook_wslay). Failures are injected only on the thread
 * that runs the loops (a thread-local flag). Never failed, only counted:
 *  - libuv's allocations: libuv aborts by design when it cannot grow its
 *    watcher array (uv__io_start has no error path);
 *  - wslay's list cells (wslay_queue_push): wslay 1.1.1 then leaks the
 *    chunk or message it was queueing (see alloc_wslay_src);
 *  - jansson's parser after its first allocation: jansson 2.14 drops
 *    bytes or reports a syntax error when those fail (alloc_json_malloc).
 * These are defects of the libraries, not paths wshub could handle; every
 * other allocation of wshub, jansson, wslay and OpenSSL is failed in turn.
 *
 * Sanitizers: --wrap works with ASan, whose runtime (gcc's shared one or
 * clang's static one) defines the malloc that __real_malloc names, so every
 * allocation still goes through ASan, and LeakSanitizer checks for leaks at
 * exit on top of the counter below.
 *
 * Live-allocation counter: the wrappers record every pointer they hand out
 * in a set (kept with the real allocator, under a mutex, holding ~p so that
 * LeakSanitizer does not take it for a reference) and forget it in free().
 * A pointer the set does not know — memory that libc or another library
 * allocated itself — is passed to the real free() uncounted, so the count
 * is exact for what we can see and ignores what we cannot. OpenSSL's
 * allocations are failable but not counted: it keeps process-wide caches
 * until exit.
 *
 * The session. For n = 1, 2, ... up to the number of allocations a full
 * session makes (counted in a dry run that must succeed exactly), a fresh
 * loop, chat and server are created while the n-th allocation (or, in the
 * second sweep, the n-th to the n+4-th) fails, and a client thread drives
 * a scripted session over blocking loopback sockets with 5 s receive
 * timeouts: two static files (one small, one streamed in chunks) on a
 * keep-alive connection; WebSocket A (exact 101 with permessage-deflate,
 * welcome; everything A sends is compressed, and what it gets may be)
 * joins room "oom" and posts a first message; WebSocket B arrives in "oom" (its
 * welcome lists A and holds A's message; A sees the join); A's second message
 * reaches A and B; both closing handshakes. Every answer must be exactly
 * right or a clean error: an HTTP 500/503 with Connection: close, a close
 * frame 1011 "internal error", or the connection closed. A receive timeout,
 * any other answer, a crash or a sanitizer report fails the test. Then,
 * with injection off, the same server must have no connection, client or
 * room left, serve the same session exactly (the room holding what the
 * first session left in it), and close: the close callback runs,
 * uv_loop_close() returns 0, and the live-allocation count is back where
 * it was before the loop was created.
 *
 * Global state: the --wrap entry points and the jansson, libuv, OpenSSL
 * and wslay allocator hooks take no user pointer, so the allocator's state
 * is one file-scope struct (`alloc_state`) plus thread-local flags.
 * Everything else lives in structs owned by main() and the client thread.
 *
 *   WSHUB_OOM_VERBOSE=1   one line per run
 *   WSHUB_OOM_ONLY=n      only the runs failing allocation n (both sweeps)
 *   WSHUB_OOM_WIDTH=1|5   only the sweep failing that many allocations
 *   WSHUB_OOM_TRACE=1     a backtrace at each injected failure
 *   WSHUB_OOM_LIST=1      the source of every failable attempt
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <jansson.h>
#include <link.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include "handshake.h"
#include "server.h"
#include "unit.h"
#include "wshub.h"

/* ---- the allocator ---- */

/* Where an allocation comes from; the last two are never failed. */
enum {
  SRC_WSHUB,
  SRC_JANSSON,
  SRC_WSLAY,
  SRC_SSL,
  SRC_UV,
  SRC_WSLAY_QUEUE,
  SRC_JSON_PARSE,
  SRC_COUNT
};
static const char *const alloc_src_names[SRC_COUNT] = {
    "wshub", "jansson",          "wslay",         "openssl",
    "libuv", "wslay queue cell", "jansson parser"};

#define ALLOC_EMPTY ((uintptr_t)0)
#define ALLOC_TOMB ((uintptr_t)1)
/* The set holds ~p, not p: LeakSanitizer scans the heap for pointers, and
 * would take a leaked block whose address is in the set for reachable. */
#define ALLOC_KEY(p) (~(uintptr_t)(p))

typedef struct {
  pthread_mutex_t lock; /* the set below */
  uintptr_t *slots;     /* open addressing, linear probing */
  size_t cap;           /* a power of two */
  size_t used;          /* live entries and tombstones */
  size_t live;          /* allocations handed out and not freed */
  /* Only the loop thread reads or writes the rest. */
  int armed;                             /* count (and maybe fail) attempts */
  int failable[SRC_COUNT];               /* sources we may fail */
  unsigned long seen;                    /* failable attempts while armed */
  unsigned long per_src[SRC_COUNT];      /* every attempt while armed */
  unsigned long fail_from, fail_to;      /* attempts to fail (1-based) */
  unsigned long injected;                /* failures handed out */
  int trace;                             /* print a backtrace at each failure */
  int list;                              /* print each attempt's source */
  uintptr_t queue_push, queue_push_size; /* wslay_queue_push's code */
} alloc_state_t;

static alloc_state_t alloc_state = {.lock = PTHREAD_MUTEX_INITIALIZER};
static _Thread_local int alloc_on_loop; /* set on the loop thread */
/* Inside json_loadb(): 1 + the allocations it has made so far. */
static _Thread_local unsigned alloc_parsing;

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t max);
json_t *__real_json_loadb(const char *buffer, size_t buflen, size_t flags,
                          json_error_t *error);
json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags,
                          json_error_t *error);

static size_t alloc_hash(uintptr_t p, size_t cap) {
  uint64_t x = (uint64_t)p >> 4;
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ull;
  x ^= x >> 29;
  return (size_t)x & (cap - 1);
}

static void alloc_insert(uintptr_t p);

static void alloc_rehash(void) {
  size_t ncap = 1024;
  while (ncap < alloc_state.live * 4)
    ncap *= 2;
  uintptr_t *old = alloc_state.slots;
  size_t ocap = alloc_state.cap;
  alloc_state.slots = __real_calloc(ncap, sizeof(uintptr_t));
  if (alloc_state.slots == NULL) {
    fputs("test_oom: out of memory for the allocation set\n", stderr);
    abort();
  }
  alloc_state.cap = ncap;
  alloc_state.used = 0;
  for (size_t i = 0; i < ocap; i++)
    if (old[i] > ALLOC_TOMB)
      alloc_insert(old[i]);
  __real_free(old);
}

/* Lock held. Keys are unique: a live pointer is never handed out twice. */
static void alloc_insert(uintptr_t p) {
  if ((alloc_state.used + 1) * 2 > alloc_state.cap)
    alloc_rehash();
  size_t i = alloc_hash(p, alloc_state.cap);
  while (alloc_state.slots[i] > ALLOC_TOMB)
    i = (i + 1) & (alloc_state.cap - 1);
  if (alloc_state.slots[i] == ALLOC_EMPTY)
    alloc_state.used++;
  alloc_state.slots[i] = p;
}

/* Lock held. 1 if p was in the set. */
static int alloc_remove(uintptr_t p) {
  if (alloc_state.cap == 0)
    return 0;
  size_t i = alloc_hash(p, alloc_state.cap);
  while (alloc_state.slots[i] != ALLOC_EMPTY) {
    if (alloc_state.slots[i] == p) {
      alloc_state.slots[i] = ALLOC_TOMB;
      return 1;
    }
    i = (i + 1) & (alloc_state.cap - 1);
  }
  return 0;
}

static void alloc_track(void *p) {
  pthread_mutex_lock(&alloc_state.lock);
  alloc_insert(ALLOC_KEY(p));
  alloc_state.live++;
  pthread_mutex_unlock(&alloc_state.lock);
}

static void alloc_untrack(void *p) {
  pthread_mutex_lock(&alloc_state.lock);
  if (alloc_remove(ALLOC_KEY(p)))
    alloc_state.live--;
  pthread_mutex_unlock(&alloc_state.lock);
}

static size_t alloc_live(void) {
  pthread_mutex_lock(&alloc_state.lock);
  size_t n = alloc_state.live;
  pthread_mutex_unlock(&alloc_state.lock);
  return n;
}

/* 1 if this attempt is to fail. */
static int alloc_fail(int src) {
  if (!alloc_on_loop || !alloc_state.armed)
    return 0;
  alloc_state.per_src[src]++;
  if (!alloc_state.failable[src])
    return 0;
  unsigned long n = ++alloc_state.seen;
  if (alloc_state.list)
    fprintf(stderr, "unit-oom: attempt %lu: %s\n", n, alloc_src_names[src]);
  if (n < alloc_state.fail_from || n > alloc_state.fail_to)
    return 0;
  alloc_state.injected++;
  if (alloc_state.trace) {
    void *bt[32];
    int depth = backtrace(bt, 32);
    fprintf(stderr, "unit-oom: allocation %lu (%s) fails here:\n", n,
            alloc_src_names[src]);
    backtrace_symbols_fd(bt, depth, 2);
  }
  return 1;
}

static void *alloc_malloc(int src, size_t size) {
  if (alloc_fail(src)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __real_malloc(size);
  if (p != NULL)
    alloc_track(p);
  return p;
}

static void *alloc_calloc(int src, size_t n, size_t size) {
  if (alloc_fail(src)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __real_calloc(n, size);
  if (p != NULL)
    alloc_track(p);
  return p;
}

static void *alloc_realloc(int src, void *p, size_t size) {
  if (p == NULL)
    return alloc_malloc(src, size);
  if (alloc_fail(src)) {
    errno = ENOMEM;
    return NULL;
  }
  void *q = __real_realloc(p, size);
  if (q != NULL) {
    pthread_mutex_lock(&alloc_state.lock);
    if (alloc_remove(ALLOC_KEY(p)))
      alloc_state.live--;
    alloc_insert(ALLOC_KEY(q));
    alloc_state.live++;
    pthread_mutex_unlock(&alloc_state.lock);
  }
  return q;
}

static void alloc_free(void *p) {
  if (p == NULL)
    return;
  alloc_untrack(p);
  __real_free(p);
}

void *__wrap_malloc(size_t size) {
  return alloc_malloc(SRC_WSHUB, size);
}

void *__wrap_calloc(size_t n, size_t size) {
  return alloc_calloc(SRC_WSHUB, n, size);
}

void *__wrap_realloc(void *p, size_t size) {
  return alloc_realloc(SRC_WSHUB, p, size);
}

void __wrap_free(void *p) {
  alloc_free(p);
}

char *__wrap_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = alloc_malloc(SRC_WSHUB, n);
  if (p != NULL)
    memcpy(p, s, n);
  return p;
}

char *__wrap_strndup(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  char *p = alloc_malloc(SRC_WSHUB, n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* jansson 2.14's parser is not safe against allocation failure: when its
 * token buffer cannot grow, lex_save() drops the byte and goes on (a
 * corrupted string, or a read past the buffer if the byte was a closing
 * quote), and a failed string allocation is reported as a syntax error.
 * wshub cannot mend that, so inside json_loadb() only the first
 * allocation (the token buffer itself: an empty error, which the chat
 * takes for what it is) is failed. Everything else jansson does is. */
static void *alloc_json_malloc(size_t size) {
  int src = SRC_JANSSON;
  if (alloc_parsing > 0 && alloc_parsing++ > 1)
    src = SRC_JSON_PARSE;
  return alloc_malloc(src, size);
}

json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags,
                          json_error_t *error) {
  alloc_parsing = 1;
  json_t *o = __real_json_loadb(buffer, buflen, flags, error);
  alloc_parsing = 0;
  return o;
}

static void *alloc_uv_malloc(size_t size) {
  return alloc_malloc(SRC_UV, size);
}

static void *alloc_uv_calloc(size_t n, size_t size) {
  return alloc_calloc(SRC_UV, n, size);
}

static void *alloc_uv_realloc(void *p, size_t size) {
  return alloc_realloc(SRC_UV, p, size);
}

/* wslay 1.1.1 leaks the chunk or message it was queueing when
 * wslay_queue_push() cannot allocate its list cell
 * (wslay_event_imsg_append_chunk, wslay_event_queue_msg): a bug of
 * wslay's that wshub cannot mend, so those cells are never failed. Every
 * other wslay allocation is. */
static int alloc_wslay_src(const void *caller) {
  return (uintptr_t)caller - alloc_state.queue_push <
                 alloc_state.queue_push_size
             ? SRC_WSLAY_QUEUE
             : SRC_WSLAY;
}

__attribute__((noinline)) static void *alloc_wslay_malloc(size_t size) {
  return alloc_malloc(alloc_wslay_src(__builtin_return_address(0)), size);
}

__attribute__((noinline)) static void *alloc_wslay_calloc(size_t n,
                                                          size_t size) {
  return alloc_calloc(alloc_wslay_src(__builtin_return_address(0)), n, size);
}

__attribute__((noinline)) static void *alloc_wslay_realloc(void *p,
                                                           size_t size) {
  return alloc_realloc(alloc_wslay_src(__builtin_return_address(0)), p, size);
}

/* OpenSSL: failable, not counted (see the top of the file). */
static void *alloc_ssl_malloc(size_t size, const char *file, int line) {
  (void)file;
  (void)line;
  if (alloc_fail(SRC_SSL))
    return NULL;
  return __real_malloc(size);
}

static void *alloc_ssl_realloc(void *p, size_t size, const char *file,
                               int line) {
  (void)file;
  (void)line;
  if (alloc_fail(SRC_SSL))
    return NULL;
  return __real_realloc(p, size);
}

static void alloc_ssl_free(void *p, const char *file, int line) {
  (void)file;
  (void)line;
  __real_free(p);
}

/* ---- libwslay's GOT ---- */

#if __ELF_NATIVE_CLASS == 64
#define GOT_R_TYPE(i) ELF64_R_TYPE(i)
#define GOT_R_SYM(i) ELF64_R_SYM(i)
#else
#define GOT_R_TYPE(i) ELF32_R_TYPE(i)
#define GOT_R_SYM(i) ELF32_R_SYM(i)
#endif
#if defined(__x86_64__)
#define GOT_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define GOT_R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define GOT_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define GOT_R_GLOB_DAT R_AARCH64_GLOB_DAT
#endif

typedef struct {
  const char *name;
  void *fn;
} got_hook_t;

typedef struct {
  const got_hook_t *hooks;
  size_t nhooks;
  int found;   /* libwslay.so is loaded */
  int patched; /* GOT slots pointed at our functions */
  int error;
} got_patch_t;

/* Values in the dynamic section: glibc relocates them in place on most
 * targets; an unrelocated one is an offset from the load address. */
static uintptr_t got_addr(const struct dl_phdr_info *info, ElfW(Addr) v) {
  return v < info->dlpi_addr ? info->dlpi_addr + v : v;
}

#ifdef GOT_R_JUMP_SLOT
static void got_patch_slot(got_patch_t *pt, const struct dl_phdr_info *info,
                           void **slot, void *fn) {
  uintptr_t page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t page = (uintptr_t)slot & ~(page_size - 1);
  /* Is the slot in the read-only-after-relocation segment? */
  int relro = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_GNU_RELRO && (uintptr_t)slot >= start &&
        (uintptr_t)slot < start + ph->p_memsz)
      relro = 1;
  }
  if (relro && mprotect((void *)page, page_size, PROT_READ | PROT_WRITE) != 0) {
    pt->error = errno;
    return;
  }
  *slot = fn;
  if (relro)
    mprotect((void *)page, page_size, PROT_READ);
  pt->patched++;
}
#endif

static int got_patch_object(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  got_patch_t *pt = arg;
  if (info->dlpi_name == NULL || strstr(info->dlpi_name, "libwslay.so") == NULL)
    return 0;
  pt->found = 1;
#ifdef GOT_R_JUMP_SLOT
  const ElfW(Dyn) *dyn = NULL;
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
      dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  if (dyn == NULL)
    return 1;
  const ElfW(Sym) *symtab = NULL;
  const char *strtab = NULL;
  const ElfW(Rela) * rela[2] = {NULL, NULL};
  size_t relasz[2] = {0, 0};
  for (; dyn->d_tag != DT_NULL; dyn++) {
    switch (dyn->d_tag) {
    case DT_SYMTAB:
      symtab = (const ElfW(Sym) *)got_addr(info, dyn->d_un.d_ptr);
      break;
    case DT_STRTAB:
      strtab = (const char *)got_addr(info, dyn->d_un.d_ptr);
      break;
    case DT_JMPREL:
      rela[0] = (const ElfW(Rela) *)got_addr(info, dyn->d_un.d_ptr);
      break;
    case DT_PLTRELSZ:
      relasz[0] = dyn->d_un.d_val;
      break;
    case DT_RELA:
      rela[1] = (const ElfW(Rela) *)got_addr(info, dyn->d_un.d_ptr);
      break;
    case DT_RELASZ:
      relasz[1] = dyn->d_un.d_val;
      break;
    default:
      break;
    }
  }
  if (symtab == NULL || strtab == NULL)
    return 1;
  for (int k = 0; k < 2; k++) {
    if (rela[k] == NULL)
      continue;
    for (size_t i = 0; i < relasz[k] / sizeof(ElfW(Rela)); i++) {
      const ElfW(Rela) *r = &rela[k][i];
      unsigned long type = GOT_R_TYPE(r->r_info);
      if (type != GOT_R_JUMP_SLOT && type != GOT_R_GLOB_DAT)
        continue;
      const char *name = strtab + symtab[GOT_R_SYM(r->r_info)].st_name;
      for (size_t h = 0; h < pt->nhooks; h++)
        if (strcmp(name, pt->hooks[h].name) == 0)
          got_patch_slot(pt, info, (void **)(info->dlpi_addr + r->r_offset),
                         pt->hooks[h].fn);
    }
  }
#endif
  return 1;
}

/* Points libwslay's malloc, calloc, realloc and free at ours. Returns the
 * number of GOT slots patched (0: wslay's allocations are not hooked). */
static int got_hook_wslay(void) {
  static const got_hook_t hooks[] = {
      {"malloc", (void *)alloc_wslay_malloc},
      {"calloc", (void *)alloc_wslay_calloc},
      {"realloc", (void *)alloc_wslay_realloc},
      {"free", (void *)alloc_free},
  };
  got_patch_t pt = {hooks, sizeof(hooks) / sizeof(hooks[0]), 0, 0, 0};
  dl_iterate_phdr(got_patch_object, &pt);
  if (pt.error != 0)
    fprintf(stderr, "test_oom: cannot patch libwslay's GOT: %s\n",
            strerror(pt.error));
  /* Where wslay_queue_push's code is (see alloc_wslay_src). */
  void *push = dlsym(RTLD_DEFAULT, "wslay_queue_push");
  Dl_info info;
  const ElfW(Sym) *sym = NULL;
  if (push != NULL &&
      dladdr1(push, &info, (void **)&sym, RTLD_DL_SYMENT) != 0 && sym != NULL) {
    alloc_state.queue_push = (uintptr_t)push;
    alloc_state.queue_push_size = sym->st_size;
  }
  return pt.error != 0 ? 0 : pt.patched;
}

/* ---- the client script (its own thread, blocking sockets) ---- */

#define CLIENT_TIMEOUT_S 5
#define CLIENT_MAX_FRAME 65536
#define HELLO_BODY "hello, oom\n"
#define BIG_LEN 150000

enum { ST_OK = 0, ST_ERR = 1, ST_FAIL = 2 };

typedef struct {
  int port;
  int strict;      /* no failure injected: every step must succeed */
  int first;       /* the server's first session: rooms are empty */
  int failed;      /* a test failure (not a clean error) */
  char why[1536];  /* the first one */
  unsigned errors; /* steps that ended in a clean error */
  unsigned char frame[CLIENT_MAX_FRAME];
  unsigned char plain[CLIENT_MAX_FRAME]; /* a frame inflated */
  size_t frame_len;
  int opcode;
} client_t;

typedef struct {
  int fd;
  int ok; /* still in the script */
  char id[24];
  int deflate; /* offers permessage-deflate, compresses what it sends */
} peer_t;

static int client_fail(client_t *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int client_fail(client_t *cl, const char *fmt, ...) {
  if (!cl->failed) {
    cl->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->why, sizeof(cl->why), fmt, ap);
    va_end(ap);
  }
  return ST_FAIL;
}

/* A clean error: allowed only while failures are injected. */
static int client_error(client_t *cl, const char *what, const char *how) {
  if (cl->strict)
    return client_fail(cl, "%s: %s (no failure was injected)", what, how);
  cl->errors++;
  return ST_ERR;
}

static int client_connect(client_t *cl, int *fd, const char *what) {
  int f = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (f < 0)
    return client_fail(cl, "%s: socket: %s", what, strerror(errno));
  struct timeval tv = {CLIENT_TIMEOUT_S, 0};
  setsockopt(f, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(f, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)cl->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(f, (struct sockaddr *)&a, sizeof(a)) != 0) {
    int e = errno;
    close(f);
    return client_fail(cl, "%s: connect: %s", what, strerror(e));
  }
  *fd = f;
  return ST_OK;
}

static int client_send(client_t *cl, int fd, const void *p, size_t n,
                       const char *what) {
  size_t done = 0;
  while (done < n) {
    ssize_t k = send(fd, (const char *)p + done, n - done, MSG_NOSIGNAL);
    if (k > 0) {
      done += (size_t)k;
      continue;
    }
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
      return client_error(cl, what, "connection closed while sending");
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return client_fail(cl, "%s: send blocked for %d s", what,
                         CLIENT_TIMEOUT_S);
    return client_fail(cl, "%s: send: %s", what, strerror(errno));
  }
  return ST_OK;
}

/* Exactly n bytes; the server closing is a clean end, silence a failure. */
static int client_recv(client_t *cl, int fd, void *p, size_t n,
                       const char *what) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = recv(fd, (char *)p + got, n - got, 0);
    if (k > 0) {
      got += (size_t)k;
      continue;
    }
    if (k == 0 || errno == ECONNRESET)
      return client_error(cl, what, "connection closed");
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return client_fail(cl, "%s: no answer within %d s", what,
                         CLIENT_TIMEOUT_S);
    return client_fail(cl, "%s: recv: %s", what, strerror(errno));
  }
  return ST_OK;
}

/* The server must close now (after a response with Connection: close or
 * a closing handshake). */
static int client_expect_eof(client_t *cl, int fd, const char *what) {
  char c;
  for (;;) {
    ssize_t k = recv(fd, &c, 1, 0);
    if (k == 0 || (k < 0 && errno == ECONNRESET))
      return ST_OK;
    if (k > 0)
      return client_fail(cl, "%s: bytes after the end (0x%02x)", what,
                         (unsigned char)c);
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return client_fail(cl, "%s: not closed within %d s", what,
                         CLIENT_TIMEOUT_S);
    return client_fail(cl, "%s: recv: %s", what, strerror(errno));
  }
}

/* An HTTP response head, byte by byte (the bytes after it are not ours). */
static int client_head(client_t *cl, int fd, char *head, size_t cap,
                       const char *what) {
  size_t n = 0;
  while (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) {
    if (n + 1 >= cap)
      return client_fail(cl, "%s: response head over %zu bytes", what, cap);
    int st = client_recv(cl, fd, head + n, 1, what);
    if (st != ST_OK)
      return st;
    n++;
  }
  head[n] = '\0';
  return ST_OK;
}

static int client_status(const char *head) {
  int status = 0;
  if (sscanf(head, "HTTP/1.1 %d ", &status) != 1)
    return 0;
  return status;
}

/* 500 and 503 are the clean answers to a request the server could not
 * serve for want of memory; they must close the connection. */
static int client_http_refused(client_t *cl, const char *head,
                               const char *what) {
  int status = client_status(head);
  if (cl->strict || (status != 500 && status != 503))
    return 0;
  if (strstr(head, "\r\nConnection: close\r\n") == NULL) {
    client_fail(cl, "%s: %d without Connection: close:\n%s", what, status,
                head);
    return 1;
  }
  client_error(cl, what, "refused");
  return 1;
}

static unsigned char big_byte(size_t i) {
  return (unsigned char)((i * 131 + (i >> 9)) & 0xff);
}

/* GET `path` on fd: 200, the headers and the body exactly. */
static int client_get(client_t *cl, int fd, const char *path, int close_conn,
                      const char *type, size_t len) {
  char what[96], req[256], head[2048];
  snprintf(what, sizeof(what), "GET %s", path);
  int n =
      snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n",
               path, close_conn ? "Connection: close\r\n" : "");
  int st = client_send(cl, fd, req, (size_t)n, what);
  if (st == ST_OK)
    st = client_head(cl, fd, head, sizeof(head), what);
  if (st != ST_OK)
    return st;
  if (client_http_refused(cl, head, what))
    return cl->failed ? ST_FAIL : ST_ERR;
  if (strncmp(head, "HTTP/1.1 200 OK\r\n", 17) != 0)
    return client_fail(cl, "%s: want 200, got:\n%s", what, head);
  char want_type[128], want_len[64];
  snprintf(want_type, sizeof(want_type), "\r\nContent-Type: %s\r\n", type);
  snprintf(want_len, sizeof(want_len), "\r\nContent-Length: %zu\r\n", len);
  const char *hdrs[] = {"\r\nServer: wshub/" WSHUB_VERSION "\r\n", want_type,
                        want_len, "\r\nCache-Control: no-cache\r\n"};
  for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
    if (strstr(head, hdrs[i]) == NULL)
      return client_fail(cl, "%s: no \"%.*s\" in:\n%s", what,
                         (int)strlen(hdrs[i]) - 4, hdrs[i] + 2, head);
  if ((strstr(head, "\r\nConnection: close\r\n") != NULL) != close_conn)
    return client_fail(cl, "%s: Connection: close %s:\n%s", what,
                       close_conn ? "missing" : "unexpected", head);
  char body[16384];
  for (size_t off = 0; off < len;) {
    size_t k = len - off < sizeof(body) ? len - off : sizeof(body);
    st = client_recv(cl, fd, body, k, what);
    if (st != ST_OK)
      return st;
    for (size_t i = 0; i < k; i++) {
      unsigned char want_byte = len == sizeof(HELLO_BODY) - 1
                                    ? (unsigned char)HELLO_BODY[off + i]
                                    : big_byte(off + i);
      if ((unsigned char)body[i] != want_byte)
        return client_fail(cl, "%s: body byte %zu is 0x%02x, want 0x%02x", what,
                           off + i, (unsigned char)body[i], want_byte);
    }
    off += k;
  }
  return close_conn ? client_expect_eof(cl, fd, what) : ST_OK;
}

static void client_http(client_t *cl) {
  int fd;
  if (client_connect(cl, &fd, "HTTP") != ST_OK)
    return;
  if (client_get(cl, fd, "/hello.txt", 0, "text/plain; charset=utf-8",
                 sizeof(HELLO_BODY) - 1) == ST_OK)
    client_get(cl, fd, "/big.bin", 1, "application/octet-stream", BIG_LEN);
  close(fd);
}

/* ---- WebSocket frames ---- */

static const char ws_request[] =
    "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n%s\r\n";
static const char ws_101[] =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n%s\r\n";
/* permessage-deflate, offered the way browsers do, and wshub's answer. */
static const char ws_offer[] =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
static const char ws_accepted[] =
    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover;"
    " client_no_context_takeover\r\n";

static int client_ws_open(client_t *cl, peer_t *p, const char *target,
                          const char *what) {
  p->fd = -1;
  p->ok = 0;
  p->id[0] = '\0';
  int st = client_connect(cl, &p->fd, what);
  if (st != ST_OK)
    return st;
  char req[512], head[2048], want[512];
  int n = snprintf(req, sizeof(req), ws_request, target,
                   p->deflate ? ws_offer : "");
  st = client_send(cl, p->fd, req, (size_t)n, what);
  if (st == ST_OK)
    st = client_head(cl, p->fd, head, sizeof(head), what);
  if (st != ST_OK)
    return st;
  snprintf(want, sizeof(want), ws_101, p->deflate ? ws_accepted : "");
  if (strcmp(head, want) == 0)
    return ST_OK;
  if (client_http_refused(cl, head, what))
    return cl->failed ? ST_FAIL : ST_ERR;
  return client_fail(cl, "%s: want the 101, got:\n%s", what, head);
}

/* One message through a fresh raw deflate stream (the server answered
 * client_no_context_takeover), the 00 00 ff ff cut; 0 on failure. */
static size_t client_zip(int inflating, const unsigned char *in, size_t len,
                         unsigned char *out, size_t cap) {
  static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
  z_stream z;
  memset(&z, 0, sizeof(z));
  if ((inflating ? inflateInit2(&z, -15)
                 : deflateInit2(&z, 6, Z_DEFLATED, -15, 8,
                                Z_DEFAULT_STRATEGY)) != Z_OK)
    return 0;
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  int r = inflating ? inflate(&z, Z_SYNC_FLUSH) : deflate(&z, Z_SYNC_FLUSH);
  if (inflating && r == Z_OK && z.avail_in == 0) {
    z.next_in = (Bytef *)tail;
    z.avail_in = sizeof(tail);
    r = inflate(&z, Z_SYNC_FLUSH);
  }
  size_t n = cap - z.avail_out;
  int ok = (r == Z_OK || r == Z_BUF_ERROR) && z.avail_in == 0 &&
           z.avail_out > 0 && (inflating || n >= 4);
  if (inflating)
    inflateEnd(&z);
  else
    deflateEnd(&z);
  return !ok ? 0 : inflating ? n : n - 4;
}

/* A masked client frame; a text message of a deflate peer goes
 * compressed. */
static int client_ws_send(client_t *cl, peer_t *p, int opcode, const void *data,
                          size_t len, const char *what) {
  unsigned char f[1024], z[1024];
  static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  size_t h = 0;
  if (len + 8 > sizeof(f))
    return client_fail(cl, "%s: frame too large", what);
  int rsv1 = p->deflate && opcode == 0x1;
  if (rsv1) {
    len = client_zip(0, data, len, z, sizeof(z));
    if (len == 0)
      return client_fail(cl, "%s: cannot compress", what);
    data = z;
  }
  f[h++] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
  if (len < 126) {
    f[h++] = (unsigned char)(0x80 | len);
  } else {
    f[h++] = 0x80 | 126;
    f[h++] = (unsigned char)(len >> 8);
    f[h++] = (unsigned char)len;
  }
  memcpy(f + h, mask, 4);
  h += 4;
  for (size_t i = 0; i < len; i++)
    f[h + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
  return client_send(cl, p->fd, f, h + len, what);
}

/* One server frame into cl->frame: unmasked, FIN, no RSV bits but RSV1 on
 * a compressed text frame to a deflate peer (inflated here). */
static int client_ws_frame(client_t *cl, peer_t *p, const char *what) {
  unsigned char h[8];
  int st = client_recv(cl, p->fd, h, 2, what);
  if (st != ST_OK)
    return st;
  int rsv1 = p->deflate && h[0] == 0xc1;
  if (((h[0] & 0xf0) != 0x80 && !rsv1) || (h[1] & 0x80) != 0)
    return client_fail(cl, "%s: bad frame header %02x %02x", what, h[0], h[1]);
  int opcode = h[0] & 0x0f;
  uint64_t len = h[1] & 0x7f;
  if (len == 126) {
    if ((st = client_recv(cl, p->fd, h, 2, what)) != ST_OK)
      return st;
    len = (uint64_t)h[0] << 8 | h[1];
  } else if (len == 127) {
    if ((st = client_recv(cl, p->fd, h, 8, what)) != ST_OK)
      return st;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | h[i];
  }
  if (len > CLIENT_MAX_FRAME)
    return client_fail(cl, "%s: frame of %llu bytes", what,
                       (unsigned long long)len);
  if ((st = client_recv(cl, p->fd, cl->frame, (size_t)len, what)) != ST_OK)
    return st;
  if (rsv1) {
    size_t n =
        client_zip(1, cl->frame, (size_t)len, cl->plain, sizeof(cl->plain));
    if (n == 0)
      return client_fail(cl, "%s: bad compressed frame", what);
    memcpy(cl->frame, cl->plain, n);
    len = n;
  }
  cl->frame_len = (size_t)len;
  cl->opcode = opcode;
  return ST_OK;
}

/* The next message: a JSON text frame into *out, or a clean end (close
 * 1011 "internal error", or the connection closed). */
static int client_ws_next(client_t *cl, peer_t *p, json_t **out,
                          const char *what) {
  *out = NULL;
  int st = client_ws_frame(cl, p, what);
  if (st != ST_OK)
    return st;
  int opcode = cl->opcode;
  if (opcode == 0x8) {
    int code = cl->frame_len >= 2 ? cl->frame[0] << 8 | cl->frame[1] : 0;
    static const char reason[] = "internal error";
    if (code == 1011 && cl->frame_len == 2 + sizeof(reason) - 1 &&
        memcmp(cl->frame + 2, reason, sizeof(reason) - 1) == 0)
      return client_error(cl, what, "close 1011");
    return client_fail(cl, "%s: close frame %d \"%.*s\"", what, code,
                       cl->frame_len > 2 ? (int)cl->frame_len - 2 : 0,
                       (const char *)cl->frame + 2);
  }
  if (opcode != 0x1)
    return client_fail(cl, "%s: opcode %d", what, opcode);
  json_error_t err;
  *out = json_loadb((const char *)cl->frame, cl->frame_len, 0, &err);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return client_fail(cl, "%s: not a JSON object: %.*s", what,
                       (int)cl->frame_len, (const char *)cl->frame);
  }
  return ST_OK;
}

/* Removes every "timestamp" (checking it is a plausible integer). */
static int client_strip(json_t *v) {
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (!client_strip(json_array_get(v, i)))
        return 0;
    return 1;
  }
  if (!json_is_object(v))
    return 1;
  json_t *ts = json_object_get(v, "timestamp");
  if (ts != NULL) {
    if (!json_is_integer(ts) || json_integer_value(ts) < 1500000000000LL)
      return 0;
    json_object_del(v, "timestamp");
  }
  const char *key;
  json_t *val;
  json_object_foreach(v, key, val) {
    if (!client_strip(val))
      return 0;
  }
  return 1;
}

static int client_is_id(const char *id) {
  if (id == NULL || id[0] != 'c' || id[1] == '\0' || strlen(id) > 20)
    return 0;
  for (const char *p = id + 1; *p; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return 1;
}

/* `want` NULL: no expectation can even be built from `got` (a message
 * without a client id, a history that cannot be the room's). */
static int client_mismatch(client_t *cl, const json_t *got, const json_t *want,
                           const char *what) {
  size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
  char *g = json_dumps(got, flags);
  char *w = want ? json_dumps(want, flags) : NULL;
  client_fail(cl, "%s:\n  got  %s\n  want %s", what, g ? g : "?",
              w ? w : "(not a possible answer)");
  free(g);
  free(w);
  return ST_FAIL;
}

/* ---- the expected messages (docs/PROTOCOL.md, chat.c's texts) ---- */

static json_t *want_base(const char *type, const char *text) {
  return json_pack("{s:s, s:s, s:{s:s}}", "type", type, "text", text, "params",
                   "value", text);
}

static json_t *want_member(const char *id, const char *nick) {
  return json_pack("{s:s, s:s}", "id", id, "nick", nick);
}

static json_t *want_welcome(const char *id, const char *nick, const char *room,
                            const json_t *members, json_int_t last_id,
                            const json_t *history) {
  char text[128];
  snprintf(text, sizeof(text), "Connected to wshub as %s in %s", nick, room);
  json_t *o = want_base("welcome", text);
  json_object_update_new(
      o, json_pack("{s:s, s:s, s:s, s:[s], s:O, s:I, s:I, s:O}", "id", id,
                   "nick", nick, "room", room, "rooms", room, "history",
                   history, "last_id", last_id, "member_count",
                   (json_int_t)json_array_size(members), "members", members));
  return o;
}

static json_t *want_joined(const char *room, const json_t *members,
                           json_int_t last_id, const json_t *history) {
  char text[128];
  snprintf(text, sizeof(text), "You joined %s", room);
  json_t *o = want_base("joined", text);
  json_object_update_new(
      o, json_pack("{s:s, s:O, s:I, s:I, s:O}", "room", room, "history",
                   history, "last_id", last_id, "member_count",
                   (json_int_t)json_array_size(members), "members", members));
  return o;
}

static json_t *want_presence(const char *type, const char *id, const char *nick,
                             const char *room) {
  char text[128];
  snprintf(text, sizeof(text), "%s %s %s", nick,
           strcmp(type, "join") == 0 ? "joined" : "left", room);
  json_t *o = want_base(type, text);
  json_object_update_new(o, json_pack("{s:s, s:o}", "room", room, "member",
                                      want_member(id, nick)));
  return o;
}

static json_t *want_message(json_int_t id, const char *room,
                            const char *from_id, const char *from_nick,
                            const char *text, int own) {
  return json_pack("{s:s, s:I, s:s, s:o, s:s, s:b, s:{s:s}}", "type", "message",
                   "id", id, "room", room, "from",
                   want_member(from_id, from_nick), "text", text, "own", own,
                   "params", "value", text);
}

/* A presence notice about `nick` in `room` (its id not known to us). */
static int client_is_presence(const json_t *got, const char *nick,
                              const char *room) {
  const char *type = json_string_value(json_object_get(got, "type"));
  const char *id =
      json_string_value(json_object_get(json_object_get(got, "member"), "id"));
  if (type == NULL || !client_is_id(id) ||
      (strcmp(type, "join") != 0 && strcmp(type, "leave") != 0))
    return 0;
  json_t *want = want_presence(type, id, nick, room);
  int eq = json_equal(got, want);
  json_decref(want);
  return eq;
}

/* Extra messages a lenient step may skip (each at most once): presence
 * notices of a nick in a room, or one exact message. */
typedef struct {
  const char *presence_nick[2];
  const char *presence_room;
  const json_t *message;
  int message_seen;
} extras_t;

static int client_extra(extras_t *x, const json_t *got) {
  if (x == NULL)
    return 0;
  for (int i = 0; i < 2; i++)
    if (x->presence_nick[i] != NULL &&
        client_is_presence(got, x->presence_nick[i], x->presence_room))
      return 1;
  if (x->message != NULL && !x->message_seen && json_equal(got, x->message)) {
    x->message_seen = 1;
    return 1;
  }
  return 0;
}

/* The next message must equal `want` (timestamps aside); a lenient step
 * may skip extras first. */
static int client_expect(client_t *cl, peer_t *p, const json_t *want,
                         extras_t *x, const char *what) {
  for (;;) {
    json_t *got;
    int st = client_ws_next(cl, p, &got, what);
    if (st != ST_OK)
      return st;
    if (!client_strip(got)) {
      st = client_fail(cl, "%s: bad timestamp", what);
    } else if (json_equal(got, want)) {
      st = ST_OK;
    } else if (!cl->strict && client_extra(x, got)) {
      json_decref(got);
      continue;
    } else {
      st = client_mismatch(cl, got, want, what);
    }
    json_decref(got);
    return st;
  }
}

/* What a room holds when a client arrives: its history and last id. */
typedef struct {
  const json_t *history;
  json_int_t last_id;
} room_state_t;

/* A welcome: learns the client's id. `members` (the members before it)
 * and `states` list what may be there: only the first of each when strict;
 * when lenient, a client that failed may or may not be gone yet, and its
 * last message may or may not have been taken. */
static int client_welcome(client_t *cl, peer_t *p, const char *nick,
                          const char *room, const json_t *const *members,
                          size_t nmembers, const room_state_t *states,
                          size_t nstates, const char *what) {
  json_t *got;
  int st = client_ws_next(cl, p, &got, what);
  if (st != ST_OK)
    return st;
  const char *id = json_string_value(json_object_get(got, "id"));
  if (!client_strip(got) || !client_is_id(id)) {
    st = client_mismatch(cl, got, NULL, what);
    json_decref(got);
    return st;
  }
  snprintf(p->id, sizeof(p->id), "%s", id);
  if (cl->strict)
    nmembers = nstates = 1;
  json_t *first = NULL;
  st = ST_FAIL;
  for (size_t i = 0; i < nmembers && st != ST_OK; i++) {
    for (size_t j = 0; j < nstates && st != ST_OK; j++) {
      json_t *all = json_deep_copy(members[i]);
      json_array_append_new(all, want_member(p->id, nick));
      json_t *want = want_welcome(p->id, nick, room, all, states[j].last_id,
                                  states[j].history);
      json_decref(all);
      if (json_equal(got, want))
        st = ST_OK;
      if (first == NULL)
        first = want;
      else
        json_decref(want);
    }
  }
  if (st != ST_OK)
    client_mismatch(cl, got, first, what);
  if (first != NULL)
    json_decref(first);
  json_decref(got);
  return st;
}

/* ---- the scripted session ---- */

/* After a close frame that is not the expected reply: 1011 "internal
 * error" is a clean end, anything else a failure. */
static int client_close_frame(client_t *cl, const char *what) {
  static const char reason[] = "internal error";
  int code = cl->frame_len >= 2 ? cl->frame[0] << 8 | cl->frame[1] : 0;
  if (code == 1011 && cl->frame_len == 2 + sizeof(reason) - 1 &&
      memcmp(cl->frame + 2, reason, sizeof(reason) - 1) == 0)
    return client_error(cl, what, "close 1011");
  return client_fail(cl, "%s: close frame %d \"%.*s\"", what, code,
                     cl->frame_len > 2 ? (int)cl->frame_len - 2 : 0,
                     (const char *)cl->frame + 2);
}

/* The client's closing handshake: close 1000 "bye", the server's echo of
 * it, then the server closes the connection. */
static int client_ws_close(client_t *cl, peer_t *p, extras_t *x,
                           const char *what) {
  static const unsigned char bye[] = {0x03, 0xe8, 'b', 'y', 'e'};
  int st = client_ws_send(cl, p, 0x8, bye, sizeof(bye), what);
  while (st == ST_OK) {
    if ((st = client_ws_frame(cl, p, what)) != ST_OK)
      return st;
    if (cl->opcode == 0x8) {
      if (cl->frame_len == sizeof(bye) &&
          memcmp(cl->frame, bye, sizeof(bye)) == 0)
        return client_expect_eof(cl, p->fd, what);
      return client_close_frame(cl, what);
    }
    if (cl->opcode != 0x1)
      return client_fail(cl, "%s: opcode %d", what, cl->opcode);
    json_t *got = json_loadb((const char *)cl->frame, cl->frame_len, 0, NULL);
    int skip = !cl->strict && client_strip(got) && client_extra(x, got);
    if (!skip)
      st = client_fail(cl, "%s: unexpected message %.*s", what,
                       (int)cl->frame_len, (const char *)cl->frame);
    json_decref(got);
  }
  return st;
}

/* A's two messages in room "oom". */
static const char *const client_texts[2] = {
    "first, and longer than sixteen bytes", "hi bob"};

/* The `joined` reply to A's join of "oom". On the server's first session
 * the room is new; later, it holds what the first session left: its
 * first k of A's two messages (ids 1..k, from an earlier "ann"). Learns
 * the room's state for what follows. */
static int client_joined(client_t *cl, peer_t *a, room_state_t *state,
                         json_t **history, const char *what) {
  json_t *got;
  int st = client_ws_next(cl, a, &got, what);
  if (st != ST_OK)
    return st;
  json_t *members = json_pack("[o]", want_member(a->id, "ann"));
  json_t *hist = json_array();
  json_int_t l = 0;
  if (!client_strip(got)) {
    st = client_fail(cl, "%s: bad timestamp", what);
  } else if (!cl->first) {
    const json_t *h = json_object_get(got, "history");
    l = json_integer_value(json_object_get(got, "last_id"));
    const char *from = json_string_value(
        json_object_get(json_object_get(json_array_get(h, 0), "from"), "id"));
    if (l < 0 || l > 2 || json_array_size(h) != (size_t)l ||
        (l > 0 && (!client_is_id(from) || strcmp(from, a->id) == 0)))
      st = client_mismatch(cl, got, NULL, what);
    for (json_int_t i = 0; i < l && st == ST_OK; i++)
      json_array_append_new(
          hist, want_message(i + 1, "oom", from, "ann", client_texts[i], 0));
  }
  if (st == ST_OK) {
    json_t *want = want_joined("oom", members, l, hist);
    if (!json_equal(got, want))
      st = client_mismatch(cl, got, want, what);
    json_decref(want);
  }
  json_decref(got);
  json_decref(members);
  if (st == ST_OK) {
    json_decref(*history);
    *history = hist;
    state->history = hist;
    state->last_id = l;
  } else {
    json_decref(hist);
  }
  return st;
}

static void client_drop(peer_t *p) {
  if (p->fd >= 0)
    close(p->fd);
  p->fd = -1;
  p->ok = 0;
}

/* A sends message k (0 or 1) of client_texts and reads its own copy. */
static int client_post(client_t *cl, peer_t *a, int k, json_int_t id,
                       extras_t *x, const char *what) {
  char msg[128];
  int n = snprintf(msg, sizeof(msg), "{\"type\":\"message\",\"text\":\"%s\"}",
                   client_texts[k]);
  json_t *mine = want_message(id, "oom", a->id, "ann", client_texts[k], 1);
  int st = client_ws_send(cl, a, 0x1, msg, (size_t)n, what);
  if (st == ST_OK)
    st = client_expect(cl, a, mine, x, what);
  json_decref(mine);
  return st;
}

static void client_session(client_t *cl) {
  json_t *none = json_array();
  json_t *history = json_array(); /* "oom" as A finds it */
  json_t *with_first = NULL;      /* ... and with A's first message */
  room_state_t before = {history, 0};
  peer_t a = {-1, 0, "", 1}, b = {-1, 0, "", 0}; /* A compresses */
  json_t *with_a = NULL, *theirs = NULL;
  int sent_join = 0, sent1 = 0, posted1 = 0, posted2 = 0;
  extras_t xa = {{"bob", NULL}, "oom", NULL, 0}; /* B came and went */
  extras_t xb = {{"ann", NULL}, "oom", NULL, 0}; /* A left */

  client_http(cl);
  if (cl->failed)
    goto done; /* the first failure is the one to report */

  /* A: welcome in the lobby (which never gets a message), joins "oom",
   * posts its first message there. */
  room_state_t lobby = {none, 0};
  const json_t *nobody[1] = {none};
  a.ok = client_ws_open(cl, &a, "/?nick=ann", "A: upgrade") == ST_OK &&
         client_welcome(cl, &a, "ann", "lobby", nobody, 1, &lobby, 1,
                        "A: welcome") == ST_OK;
  if (a.ok) {
    static const char join[] = "{\"type\":\"join\",\"room\":\"oom\"}";
    sent_join = 1;
    a.ok = client_ws_send(cl, &a, 0x1, join, sizeof(join) - 1, "A: join") ==
               ST_OK &&
           client_joined(cl, &a, &before, &history, "A: joined") == ST_OK;
  }
  if (a.ok && (sent1 = 1))
    a.ok = posted1 = client_post(cl, &a, 0, before.last_id + 1, NULL,
                                 "A: own first message") == ST_OK;
  if (!a.ok)
    client_drop(&a);
  if (cl->failed)
    goto done;

  /* B: welcome in "oom" with A and its first message; A hears of B. A
   * client that failed may still be in the room while the server
   * finishes closing it, and its message may or may not have been
   * taken. */
  with_a = json_array();
  if (a.id[0])
    json_array_append_new(with_a, want_member(a.id, "ann"));
  with_first = json_deep_copy(history);
  if (a.id[0])
    json_array_append_new(with_first,
                          want_message(before.last_id + 1, "oom", a.id, "ann",
                                       client_texts[0], 0));
  const json_t *members[2] = {a.ok ? with_a : none, with_a};
  room_state_t taken = {with_first, before.last_id + 1};
  room_state_t states[2] = {taken, before};
  if (!posted1) { /* sent, A's message may or may not have been taken */
    states[0] = before;
    states[1] = taken;
  }
  b.ok =
      client_ws_open(cl, &b, "/?room=oom&nick=bob", "B: upgrade") == ST_OK &&
      client_welcome(cl, &b, "bob", "oom", members, !a.ok && sent_join ? 2 : 1,
                     states, !posted1 && sent1 ? 2 : 1, "B: welcome") == ST_OK;
  if (!b.ok)
    client_drop(&b);
  if (a.ok && b.ok) {
    json_t *want = want_presence("join", b.id, "bob", "oom");
    a.ok = client_expect(cl, &a, want, NULL, "A: B's join") == ST_OK;
    json_decref(want);
  }
  if (cl->failed)
    goto done;

  /* A's second message: A's own copy, then B's. */
  if (a.ok)
    a.ok = posted2 = client_post(cl, &a, 1, before.last_id + 2, &xa,
                                 "A: own second message") == ST_OK;
  if (a.id[0])
    theirs = want_message(before.last_id + 2, "oom", a.id, "ann",
                          client_texts[1], 0);
  if (posted2 && b.ok)
    b.ok = client_expect(cl, &b, theirs, NULL, "B: A's message") == ST_OK;
  if (cl->failed)
    goto done;

  /* Closing handshakes, A first; B hears A leave. */
  if (a.ok)
    a.ok = client_ws_close(cl, &a, &xa, "A: close") == ST_OK;
  client_drop(&a);
  if (b.ok && cl->strict) {
    json_t *want = want_presence("leave", a.id, "ann", "oom");
    b.ok = client_expect(cl, &b, want, NULL, "B: A's leave") == ST_OK;
    json_decref(want);
  }
  xb.message = posted2 ? NULL : theirs; /* B may have had it anyway */
  if (b.ok)
    b.ok = client_ws_close(cl, &b, &xb, "B: close") == ST_OK;
done:
  client_drop(&a);
  client_drop(&b);
  json_decref(theirs);
  json_decref(with_a);
  json_decref(with_first);
  json_decref(history);
  json_decref(none);
}

/* ---- one run: a fresh loop, chat and server ---- */

typedef struct {
  char dir[64]; /* the public root */
  int verbose;
} fixture_t;

typedef struct {
  const fixture_t *fx;
  uv_loop_t loop;
  uv_async_t async;    /* the client thread finished a session */
  uv_timer_t settle;   /* waits for the server to let go of the clients */
  uv_timer_t watchdog; /* a hung loop aborts the test */
  uv_thread_t thread;
  uv_sem_t go; /* the client may start the healthy session */
  wshub_chat_t *chat;
  wshub_server_t *server;
  client_t client;
  unsigned long from, to; /* allocations failed (0: none) */
  int dry;                /* no failure: the first session is strict */
  int phase;              /* 0: first session, 1: healthy one, 2: closing */
  int thread_started;
  int closed;      /* the close callback ran */
  int setup_error; /* the chat or the server could not be created */
  uint64_t settle_start;
  unsigned long seen, injected, per_src[SRC_COUNT];
  unsigned errors; /* clean errors in the first session */
  uint64_t t_start, t_first, t_settled, t_healthy; /* uv_hrtime() */
  unsigned warnings; /* warn and error log lines */
  int problems;
  char problem[2048]; /* the first one */
} run_t;

static void run_problem(run_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void run_problem(run_t *r, const char *fmt, ...) {
  if (r->problems++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->problem, sizeof(r->problem), fmt, ap);
    va_end(ap);
  }
}

static void run_log(void *user, wshub_log_level_t level, const char *msg) {
  run_t *r = user;
  if (level <= WSHUB_LOG_WARN)
    r->warnings++;
  if (strstr(msg, "shutdown timeout") != NULL)
    run_problem(r, "the server had to cut connections: %s", msg);
  if (r->fx->verbose)
    fprintf(stderr, "  log: %s\n", msg);
}

static void run_disarm(run_t *r) {
  if (!alloc_state.armed)
    return;
  alloc_state.armed = 0;
  r->seen = alloc_state.seen;
  r->injected = alloc_state.injected;
  memcpy(r->per_src, alloc_state.per_src, sizeof(r->per_src));
}

static void run_close_handles(run_t *r) {
  uv_close((uv_handle_t *)&r->async, NULL);
  uv_close((uv_handle_t *)&r->settle, NULL);
  uv_close((uv_handle_t *)&r->watchdog, NULL);
}

static void run_on_closed(wshub_server_t *s) {
  run_t *r = s->loop->data;
  r->closed = 1;
  r->server = NULL;
  run_close_handles(r);
}

static void run_on_settle(uv_timer_t *t) {
  run_t *r = t->data;
  size_t conns = wshub_server_connections(r->server);
  if (conns > 0 && uv_now(&r->loop) - r->settle_start < 3000)
    return;
  uv_timer_stop(t);
  const char *when = r->phase == 0 ? "first" : "healthy";
  if (conns > 0)
    run_problem(r, "%zu connection(s) still open 3 s after the %s session",
                conns, when);
  size_t clients = wshub_client_count(r->server);
  size_t rooms = wshub_room_count(r->server);
  if (clients > 0 || rooms > 0)
    run_problem(r, "%zu client(s) and %zu room(s) left after the %s session",
                clients, rooms, when);
  if (r->phase == 0) {
    r->phase = 1;
    r->t_settled = uv_hrtime();
    uv_sem_post(&r->go);
    return;
  }
  r->phase = 2;
  wshub_close(r->server, run_on_closed);
}

static void run_on_async(uv_async_t *a) {
  run_t *r = a->data;
  if (r->phase == 0) {
    run_disarm(r);
    r->errors = r->client.errors;
    r->t_first = uv_hrtime();
  } else {
    r->t_healthy = uv_hrtime();
  }
  r->settle_start = uv_now(&r->loop);
  uv_timer_start(&r->settle, run_on_settle, 1, 2);
}

static void run_on_watchdog(uv_timer_t *t) {
  run_t *r = t->data;
  fprintf(stderr,
          "unit-oom: failing allocations %lu..%lu: the loop is still "
          "running after 30 s (phase %d): the server hangs\n",
          r->from, r->to, r->phase);
  abort();
}

static void client_main(void *arg) {
  run_t *r = arg;
  client_t *cl = &r->client;
  cl->first = 1;
  cl->strict = r->dry;
  client_session(cl);
  uv_async_send(&r->async);
  uv_sem_wait(&r->go);
  cl->first = 0;
  cl->strict = 1;
  client_session(cl);
  uv_async_send(&r->async);
}

static void run_one(run_t *r, const fixture_t *fx, unsigned long from,
                    unsigned long to, int dry) {
  memset(r, 0, sizeof(*r));
  r->fx = fx;
  r->from = from;
  r->to = to;
  r->dry = dry;
  r->t_start = uv_hrtime();
  size_t base = alloc_live();
  uv_loop_init(&r->loop);
  r->loop.data = r;
  uv_async_init(&r->loop, &r->async, run_on_async);
  r->async.data = r;
  uv_timer_init(&r->loop, &r->settle);
  r->settle.data = r;
  uv_timer_init(&r->loop, &r->watchdog);
  r->watchdog.data = r;
  uv_timer_start(&r->watchdog, run_on_watchdog, 30000, 0);
  uv_unref((uv_handle_t *)&r->watchdog);
  uv_sem_init(&r->go, 0);

  memset(alloc_state.per_src, 0, sizeof(alloc_state.per_src));
  alloc_state.seen = 0;
  alloc_state.injected = 0;
  alloc_state.fail_from = from;
  alloc_state.fail_to = to;
  alloc_state.armed = 1;

  wshub_chat_config_t ccfg;
  wshub_chat_config_init(&ccfg);
  r->chat = wshub_chat_new(&ccfg);
  if (r->chat == NULL) {
    r->setup_error = 1;
  } else {
    wshub_config_t cfg;
    wshub_config_init(&cfg);
    cfg.public_dir = fx->dir;
    cfg.log_cb = run_log;
    cfg.log_user = r;
    cfg.close_timeout_ms = 1000;
    cfg.shutdown_timeout_ms = 2000;
    wshub_chat_install(r->chat, &cfg);
    int err = wshub_server_new(&r->loop, &cfg, &r->server);
    if (err != 0) {
      r->server = NULL;
      r->setup_error = 1;
      if (err != UV_ENOMEM)
        run_problem(r, "wshub_server_new: %s, want ENOMEM",
                    wshub_strerror(err));
    } else if ((err = wshub_listen(r->server, "127.0.0.1", 0, 0)) != 0) {
      r->setup_error = 1;
      run_problem(r, "wshub_listen: %s", wshub_strerror(err));
    }
  }
  if (!r->setup_error) {
    r->client.port = wshub_server_port(r->server);
    r->thread_started = uv_thread_create(&r->thread, client_main, r) == 0;
    if (!r->thread_started) {
      run_problem(r, "cannot start the client thread");
      run_disarm(r);
      wshub_close(r->server, run_on_closed);
    }
  } else {
    run_disarm(r);
    if (r->server != NULL)
      wshub_close(r->server, run_on_closed);
    else
      run_close_handles(r);
  }
  uv_run(&r->loop, UV_RUN_DEFAULT);
  if (r->thread_started)
    uv_thread_join(&r->thread);
  if (r->client.failed)
    run_problem(r, "%s", r->client.why);
  if (r->server != NULL)
    run_problem(r, "the close callback did not run");
  wshub_chat_free(r->chat);
  int rc = uv_loop_close(&r->loop);
  if (rc != 0)
    run_problem(r, "uv_loop_close: %s (a handle was left open)",
                uv_strerror(rc));
  uv_sem_destroy(&r->go);
  size_t live = alloc_live();
  if (live != base)
    run_problem(r, "%zd allocation(s) not freed", (ssize_t)(live - base));
  if (dry && r->warnings > 0)
    run_problem(r, "%u warning(s) logged without any failure", r->warnings);
}

/* ---- the fixture: a public root with two files ---- */

static int fixture_write(const char *dir, const char *name, const void *p,
                         size_t n) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  ssize_t w = write(fd, p, n);
  close(fd);
  return w == (ssize_t)n ? 0 : -1;
}

static int fixture_open(fixture_t *fx) {
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/wshub-oom-XXXXXX");
  if (mkdtemp(fx->dir) == NULL)
    return -1;
  unsigned char *big = malloc(BIG_LEN);
  if (big == NULL)
    return -1;
  for (size_t i = 0; i < BIG_LEN; i++)
    big[i] = big_byte(i);
  int r =
      fixture_write(fx->dir, "hello.txt", HELLO_BODY, sizeof(HELLO_BODY) - 1) |
      fixture_write(fx->dir, "big.bin", big, BIG_LEN);
  free(big);
  return r;
}

static void fixture_close(fixture_t *fx) {
  char path[128];
  snprintf(path, sizeof(path), "%s/hello.txt", fx->dir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/big.bin", fx->dir);
  unlink(path);
  rmdir(fx->dir);
}

/* ---- main ---- */

typedef struct {
  unsigned long runs, setup_errors, error_sessions, clean_sessions;
  unsigned long injected, failed_runs;
} sweep_t;

static unsigned long env_ulong(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  return v != NULL && *v ? strtoul(v, NULL, 10) : dflt;
}

static void sweep_note(unit_t *T, sweep_t *sw, const run_t *r) {
  sw->runs++;
  sw->injected += r->injected;
  if (r->setup_error)
    sw->setup_errors++;
  else if (r->errors > 0)
    sw->error_sessions++;
  else
    sw->clean_sessions++;
  if (r->fx->verbose)
    fprintf(stderr,
            "unit-oom: fail %lu..%lu: %lu attempts, %lu injected, "
            "%s, %u clean error(s), %d problem(s); ms: first %.1f, "
            "settle %.1f, healthy %.1f\n",
            r->from, r->to, r->seen, r->injected,
            r->setup_error ? "setup failed" : "served", r->errors, r->problems,
            r->t_first ? (double)(r->t_first - r->t_start) / 1e6 : 0.0,
            r->t_settled ? (double)(r->t_settled - r->t_first) / 1e6 : 0.0,
            r->t_healthy ? (double)(r->t_healthy - r->t_settled) / 1e6 : 0.0);
  if (r->problems > 0) {
    sw->failed_runs++;
    if (sw->failed_runs <= 20)
      fprintf(stderr, "unit-oom: failing allocations %lu..%lu: %s\n", r->from,
              r->to, r->problem);
  }
  unit_check(T, r->problems == 0, __FILE__, __LINE__,
             "a run with failed allocations ends cleanly");
}

int main(void) {
  unit_t t = {0}, *T = &t;
  alloc_on_loop = 1; /* this thread runs every loop */
  /* Before any other use of these libraries. */
  CHECK_EQ_INT(uv_replace_allocator(alloc_uv_malloc, alloc_uv_realloc,
                                    alloc_uv_calloc, alloc_free),
               0);
  json_set_alloc_funcs(alloc_json_malloc, alloc_free);
  int ssl_hooked = CRYPTO_set_mem_functions(alloc_ssl_malloc, alloc_ssl_realloc,
                                            alloc_ssl_free);
  int wslay_slots = got_hook_wslay();
  alloc_state.trace = (int)env_ulong("WSHUB_OOM_TRACE", 0);
  alloc_state.list = (int)env_ulong("WSHUB_OOM_LIST", 0);
  if (alloc_state.trace) {
    void *bt[2]; /* backtrace() loads libgcc on first use: not under test */
    backtrace(bt, 2);
  }
  CHECK(ssl_hooked);
  CHECK(wslay_slots > 0);

  fixture_t fx;
  memset(&fx, 0, sizeof(fx));
  fx.verbose = (int)env_ulong("WSHUB_OOM_VERBOSE", 0);
  if (!CHECK_EQ_INT(fixture_open(&fx), 0))
    return unit_finish(T);

  /* OpenSSL initializes itself on first use: do it now, not under test. */
  char accept[WSHUB_ACCEPT_LEN + 1];
  CHECK_EQ_INT(
      wshub_handshake_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept), 0);

  alloc_state.failable[SRC_WSHUB] = 1;
  alloc_state.failable[SRC_JANSSON] = 1;
  alloc_state.failable[SRC_WSLAY] = wslay_slots > 0;
  alloc_state.failable[SRC_SSL] = ssl_hooked;

  run_t *r = malloc(sizeof(*r));
  if (!CHECK(r != NULL))
    return unit_finish(T);

  uint64_t t0 = uv_hrtime();
  run_one(r, &fx, 0, 0, 1);
  unsigned long total = r->seen;
  if (r->problems > 0)
    fprintf(stderr, "unit-oom: dry run: %s\n", r->problem);
  CHECK_EQ_INT(r->problems, 0);
  CHECK_EQ_INT(r->setup_error, 0);
  CHECK_EQ_INT(r->errors, 0);
  CHECK(total > 0);
  CHECK_EQ_INT(r->injected, 0);
  if (wslay_slots > 0)
    CHECK(r->per_src[SRC_WSLAY] > 0);
  printf("unit-oom: a session makes %lu failable allocations (", total);
  for (int i = 0; i < SRC_UV; i++)
    printf("%s%s %lu", i ? ", " : "", alloc_src_names[i], r->per_src[i]);
  printf(") and %lu libuv, %lu wslay queue cell and %lu jansson parser ones "
         "(never failed)\n",
         r->per_src[SRC_UV], r->per_src[SRC_WSLAY_QUEUE],
         r->per_src[SRC_JSON_PARSE]);
  fflush(stdout);

  unsigned long only = env_ulong("WSHUB_OOM_ONLY", 0);
  unsigned long width = env_ulong("WSHUB_OOM_WIDTH", 0);
  unsigned long exhaustive = env_ulong("WSHUB_OOM_EXHAUSTIVE", 1000);
  unsigned long sampled = env_ulong("WSHUB_OOM_SAMPLED", 300);
  unsigned long stride = 1;
  if (total > exhaustive && sampled > 0)
    stride = (total - exhaustive + sampled - 1) / sampled;
  if (stride == 0)
    stride = 1;
  static const unsigned long widths[2] = {1, 5};
  sweep_t sw[2];
  memset(sw, 0, sizeof(sw));
  unsigned long bad = 0; /* a broken build fails fast, not run by run */
  for (int s = 0; s < 2 && bad < 20; s++) {
    for (unsigned long n = 1; n <= total && bad < 20;
         n += n < exhaustive ? 1 : stride) {
      if ((only != 0 && n != only) || (width != 0 && width != widths[s]))
        continue;
      run_one(r, &fx, n, n + widths[s] - 1, 0);
      sweep_note(T, &sw[s], r);
      bad = sw[0].failed_runs + sw[1].failed_runs;
    }
  }
  if (bad >= 20)
    fprintf(stderr, "unit-oom: stopped after %lu bad runs\n", bad);
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  char which[96] = "every one";
  if (total > exhaustive && stride > 1)
    snprintf(which, sizeof(which), "the first %lu, then every %lu-th",
             exhaustive, stride);
  printf("unit-oom: %lu allocations per session, %s failed in turn; "
         "alone: %lu runs, %lu ended in a clean error (%lu at setup), %lu "
         "served everything; with the next 4: %lu runs, %lu error, %lu "
         "served; %lu failures injected; %lu bad run(s); %.1f s\n",
         total, which, sw[0].runs, sw[0].error_sessions + sw[0].setup_errors,
         sw[0].setup_errors, sw[0].clean_sessions, sw[1].runs,
         sw[1].error_sessions + sw[1].setup_errors, sw[1].clean_sessions,
         sw[0].injected + sw[1].injected, sw[0].failed_runs + sw[1].failed_runs,
         secs);
  free(r);
  fixture_close(&fx);
  return unit_finish(T);
}
