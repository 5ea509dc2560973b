/* unit.h — a tiny assertion header for wshub's C unit tests.
 *
 * No globals: the counters live in a unit_t that main() owns, and the
 * CHECK macros use the `T` pointer in scope (each test function takes
 * `unit_t *T`). A failed check prints file:line, the expression and the
 * values it compared, counts the failure and carries on, so one run shows
 * every failure. unit_finish() prints "N checks, N failed" and returns the
 * exit status: 0 only if nothing failed.
 *
 *   int main(void) {
 *     unit_t t = {0}, *T = &t;
 *     CHECK_EQ_INT(1 + 1, 2);
 *     return unit_finish(T);
 *   }
 */
#ifndef WSHUB_UNIT_H
#define WSHUB_UNIT_H

#include <stdio.h>
#include <string.h>

typedef struct {
  unsigned long checks;
  unsigned long failed;
} unit_t;

static inline int unit_check(unit_t *t, int ok, const char *file, int line,
                             const char *expr) {
  t->checks++;
  if (!ok) {
    t->failed++;
    fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, expr);
  }
  return ok;
}

static inline int unit_check_int(unit_t *t, long long got, long long want,
                                 const char *file, int line, const char *ge,
                                 const char *we) {
  t->checks++;
  if (got != want) {
    t->failed++;
    fprintf(stderr, "%s:%d: FAILED: %s == %s\n  got:  %lld\n  want: %lld\n",
            file, line, ge, we, got, want);
    return 0;
  }
  return 1;
}

/* Prints bytes quoted, with anything not printable as \xNN. */
static inline void unit_print_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  fputc('"', stderr);
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\r')
      fputs("\\r", stderr);
    else if (s[i] == '\n')
      fputs("\\n", stderr);
    else if (s[i] == '"' || s[i] == '\\')
      fprintf(stderr, "\\%c", s[i]);
    else if (s[i] >= 0x20 && s[i] < 0x7f)
      fputc(s[i], stderr);
    else
      fprintf(stderr, "\\x%02x", s[i]);
  }
  fputc('"', stderr);
}

static inline int unit_check_mem(unit_t *t, const void *got, size_t got_len,
                                 const void *want, size_t want_len,
                                 const char *file, int line, const char *ge,
                                 const char *we) {
  int ok;
  t->checks++;
  if (got == NULL || want == NULL)
    ok = got == want && got_len == want_len;
  else
    ok = got_len == want_len && memcmp(got, want, got_len) == 0;
  if (!ok) {
    t->failed++;
    fprintf(stderr, "%s:%d: FAILED: %s == %s\n  got:  ", file, line, ge, we);
    if (got == NULL)
      fputs("NULL", stderr);
    else
      unit_print_bytes(got, got_len);
    fprintf(stderr, " (%zu bytes)\n  want: ", got_len);
    if (want == NULL)
      fputs("NULL", stderr);
    else
      unit_print_bytes(want, want_len);
    fprintf(stderr, " (%zu bytes)\n", want_len);
  }
  return ok;
}

static inline int unit_check_str(unit_t *t, const char *got, const char *want,
                                 const char *file, int line, const char *ge,
                                 const char *we) {
  return unit_check_mem(t, got, got ? strlen(got) : 0, want,
                        want ? strlen(want) : 0, file, line, ge, we);
}

static inline int unit_finish(const unit_t *t) {
  printf("%lu checks, %lu failed\n", t->checks, t->failed);
  return t->failed == 0 ? 0 : 1;
}

/* Each evaluates to 1 when the check passed, 0 when it failed. */
#define CHECK(cond) unit_check(T, (cond) ? 1 : 0, __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(got, want)                                                \
  unit_check_int(T, (long long)(got), (long long)(want), __FILE__, __LINE__,   \
                 #got, #want)
/* Strings compare by content; NULL equals only NULL. */
#define CHECK_EQ_STR(got, want)                                                \
  unit_check_str(T, (got), (want), __FILE__, __LINE__, #got, #want)
/* Equal lengths and equal bytes. */
#define CHECK_MEM(got, got_len, want, want_len)                                \
  unit_check_mem(T, (got), (got_len), (want), (want_len), __FILE__, __LINE__,  \
                 #got, #want)

#endif
