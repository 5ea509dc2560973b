/* config.c — settings from a JSON file and WSHUB_* variables turned into
 * "--name=value" arguments for the program's option parser (config.h). */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

/* One setting: an argument for the parser, or (arg NULL) only the claim
 * that this source sets the option, e.g. "echo": false or an empty list,
 * which still hides what a lower source says. */
typedef struct {
  const char *name; /* the option table's */
  char *arg;        /* "--name=value" / "--name", owned by the builder */
  config_source_t src;
} config_entry_t;

typedef struct {
  const config_spec_t *spec;
  config_entry_t *entries;
  size_t n, cap;
  char **owned;
  size_t nowned, capowned;
  char *err;
  size_t errlen;
} config_builder_t;

static int config_fail(config_builder_t *b, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err, b->errlen, fmt, ap);
  va_end(ap);
  return code;
}

static int config_nomem(config_builder_t *b) {
  return config_fail(b, UV_ENOMEM, "out of memory");
}

/* Keeps s (NULL: out of memory) to be freed with the result. */
static char *config_own(config_builder_t *b, char *s) {
  if (s == NULL)
    return NULL;
  if (b->nowned == b->capowned) {
    size_t cap = b->capowned ? b->capowned * 2 : 32;
    char **p = realloc(b->owned, cap * sizeof(*p));
    if (p == NULL) {
      free(s);
      return NULL;
    }
    b->owned = p;
    b->capowned = cap;
  }
  return b->owned[b->nowned++] = s;
}

static char *config_strdup(config_builder_t *b, const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (p != NULL) {
    memcpy(p, s, len);
    p[len] = '\0';
  }
  return config_own(b, p);
}

static int in_list(const char *const *list, const char *name) {
  for (; list != NULL && *list != NULL; list++)
    if (strcmp(*list, name) == 0)
      return 1;
  return 0;
}

static const struct option *config_find(const config_spec_t *spec,
                                        const char *name, size_t len) {
  for (const struct option *o = spec->opts; o->name != NULL; o++)
    if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
      return o;
  return NULL;
}

/* Adds the setting --name[=value] (value NULL: the flag; claim: nothing
 * but the claim). */
static int config_add(config_builder_t *b, const char *name, const char *value,
                      size_t vlen, int claim, config_source_t src) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    config_entry_t *p = realloc(b->entries, cap * sizeof(*p));
    if (p == NULL)
      return config_nomem(b);
    b->entries = p;
    b->cap = cap;
  }
  char *arg = NULL;
  if (!claim) {
    size_t nlen = strlen(name);
    size_t len = 2 + nlen + (value != NULL ? 1 + vlen : 0);
    char *p = malloc(len + 1);
    if (p == NULL)
      return config_nomem(b);
    memcpy(p, "--", 2);
    memcpy(p + 2, name, nlen);
    if (value != NULL) {
      p[2 + nlen] = '=';
      memcpy(p + 3 + nlen, value, vlen);
    }
    p[len] = '\0';
    if ((arg = config_own(b, p)) == NULL)
      return config_nomem(b);
  }
  b->entries[b->n++] = (config_entry_t){name, arg, src};
  return 0;
}

/* ---- the command line ---- */

/* Reads the command line's settings and --config. Returns 1 when the
 * command line is to go to the parser as it is (a mistake, help,
 * version), 0 when read, or a negative error. */
static int config_from_args(config_builder_t *b, int argc, char **argv,
                            const char **file) {
  const config_spec_t *spec = b->spec;
  /* GNU getopt_long reorders the vector it scans: scan a copy. */
  char **copy = malloc((size_t)(argc + 1) * sizeof(*copy));
  if (copy == NULL)
    return config_nomem(b);
  memcpy(copy, argv, (size_t)argc * sizeof(*copy));
  copy[argc] = NULL;
  int r = 0, ch;
  optind = 0;
  opterr = 0;
  for (;;) {
    int li = -1;
    if ((ch = getopt_long(argc, copy, spec->shortopts, spec->opts, &li)) == -1)
      break;
    const struct option *o = NULL;
    if (ch != '?' && ch != ':') {
      if (li >= 0)
        o = &spec->opts[li];
      else
        for (const struct option *p = spec->opts; p->name != NULL; p++)
          if (p->flag == NULL && p->val == ch)
            o = p;
    }
    if (o == NULL || in_list(spec->args_only, o->name)) {
      r = 1;
      break;
    }
    if (strcmp(o->name, spec->config_opt) == 0) {
      *file = optarg;
      continue;
    }
    r = config_add(b, o->name, optarg, optarg ? strlen(optarg) : 0, 0,
                   (config_source_t){CONFIG_FROM_ARGS, NULL});
    if (r != 0)
      break;
  }
  if (r == 0 && optind < argc)
    r = 1;
  optind = 0;
  free(copy);
  return r;
}

/* ---- the environment ---- */

static int config_env_flag(config_builder_t *b, const struct option *o,
                           const char *value, config_source_t src) {
  if (strcmp(value, "true") == 0)
    return config_add(b, o->name, NULL, 0, 0, src);
  if (strcmp(value, "false") == 0)
    return config_add(b, o->name, NULL, 0, 1, src);
  return config_fail(b, UV_EINVAL,
                     "invalid value '%s' for %s: expected true or false", value,
                     src.label);
}

/* A comma-separated list; spaces around items go, empty items are
 * skipped (an empty variable is an empty list). */
static int config_env_list(config_builder_t *b, const struct option *o,
                           const char *value, config_source_t src) {
  int any = 0;
  const char *p = value;
  for (;;) {
    const char *end = strchr(p, ',');
    if (end == NULL)
      end = p + strlen(p);
    const char *s = p, *e = end;
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if (e > s) {
      int r = config_add(b, o->name, s, (size_t)(e - s), 0, src);
      if (r != 0)
        return r;
      any = 1;
    }
    if (*end == '\0')
      break;
    p = end + 1;
  }
  return any ? 0 : config_add(b, o->name, NULL, 0, 1, src);
}

static int config_from_env(config_builder_t *b, char **envp,
                           const char **file) {
  const config_spec_t *spec = b->spec;
  size_t plen = strlen(spec->env_prefix);
  for (char **e = envp; e != NULL && *e != NULL; e++) {
    const char *var = *e, *eq = strchr(var, '=');
    if (eq == NULL || strncmp(var, spec->env_prefix, plen) != 0)
      continue;
    /* WSHUB_LOG_LEVEL -> log-level; other spellings name no option. */
    char name[64];
    size_t len = (size_t)(eq - var) - plen;
    if (len == 0 || len >= sizeof(name))
      continue;
    int ok = 1;
    for (size_t i = 0; i < len; i++) {
      char c = var[plen + i];
      if (c >= 'A' && c <= 'Z')
        name[i] = (char)(c - 'A' + 'a');
      else if (c >= '0' && c <= '9')
        name[i] = c;
      else if (c == '_')
        name[i] = '-';
      else
        ok = 0;
    }
    name[len] = '\0';
    const struct option *o = ok ? config_find(spec, name, len) : NULL;
    /* Variables that name no option are other programs' (or the test
     * harness's WSHUB_BIN): not an error. */
    if (o == NULL || in_list(spec->args_only, o->name))
      continue;
    const char *value = eq + 1;
    if (strcmp(o->name, spec->config_opt) == 0) {
      if (*file == NULL && *value != '\0')
        *file = value;
      continue;
    }
    char *label = config_strdup(b, var, (size_t)(eq - var));
    if (label == NULL)
      return config_nomem(b);
    config_source_t src = {CONFIG_FROM_ENV, label};
    int r;
    if (o->has_arg == no_argument)
      r = config_env_flag(b, o, value, src);
    else if (in_list(spec->repeatable, o->name))
      r = config_env_list(b, o, value, src);
    else
      r = config_add(b, o->name, value, strlen(value), 0, src);
    if (r != 0)
      return r;
  }
  return 0;
}

/* ---- the file ---- */

/* A scalar JSON value as the option's text: strings as they are, numbers
 * written out. Returns 0, or -1 for another type. */
static int config_json_text(const json_t *v, char *num, size_t numlen,
                            const char **text, size_t *len) {
  if (json_is_string(v)) {
    *text = json_string_value(v);
    *len = json_string_length(v);
    return 0;
  }
  if (json_is_integer(v))
    snprintf(num, numlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  else if (json_is_real(v))
    snprintf(num, numlen, "%.15g", json_real_value(v));
  else
    return -1;
  *text = num;
  *len = strlen(num);
  return 0;
}

static int config_file_value(config_builder_t *b, const struct option *o,
                             const json_t *v, config_source_t src) {
  const char *path = src.label, *name = o->name;
  if (o->has_arg == no_argument) {
    if (!json_is_boolean(v))
      return config_fail(b, UV_EINVAL, "%s: \"%s\" must be true or false", path,
                         name);
    return config_add(b, name, NULL, 0, json_is_false(v), src);
  }
  int repeatable = in_list(b->spec->repeatable, name);
  char num[64];
  const char *text;
  size_t len;
  if (json_is_array(v)) {
    if (!repeatable)
      return config_fail(b, UV_EINVAL, "%s: \"%s\" takes one value, not a list",
                         path, name);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
      if (config_json_text(item, num, sizeof(num), &text, &len) != 0)
        return config_fail(b, UV_EINVAL,
                           "%s: \"%s\" must be a string or a list of strings",
                           path, name);
      int r = config_add(b, name, text, len, 0, src);
      if (r != 0)
        return r;
    }
    return json_array_size(v) == 0 ? config_add(b, name, NULL, 0, 1, src) : 0;
  }
  if (config_json_text(v, num, sizeof(num), &text, &len) != 0)
    return config_fail(b, UV_EINVAL, "%s: \"%s\" must be %s", path, name,
                       repeatable ? "a string or a list of strings"
                                  : "a string or a number");
  return config_add(b, name, text, len, 0, src);
}

static int config_from_file(config_builder_t *b, const char *path,
                            const char **read) {
  const config_spec_t *spec = b->spec;
  char *label = config_strdup(b, path, strlen(path));
  if (label == NULL)
    return config_nomem(b);
  *read = label;
  config_source_t src = {CONFIG_FROM_FILE, label};
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return config_fail(b, -errno, "%s: cannot read: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    return config_fail(b, UV_EISDIR, "%s: cannot read: %s", path,
                       strerror(EISDIR));
  }
  json_error_t jerr;
  json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
  int rerr = ferror(f);
  fclose(f);
  if (root == NULL) {
    if (rerr)
      return config_fail(b, UV_EIO, "%s: cannot read: %s", path, strerror(EIO));
    return config_fail(b, UV_EINVAL, "%s:%d:%d: %s", path, jerr.line,
                       jerr.column, jerr.text);
  }
  int r = 0;
  if (!json_is_object(root))
    r = config_fail(b, UV_EINVAL,
                    "%s: expected a JSON object of option names and values",
                    path);
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (r != 0)
      break;
    const struct option *o = config_find(spec, key, strlen(key));
    if (o == NULL)
      r = config_fail(b, UV_EINVAL, "%s: unknown option \"%s\"", path, key);
    else if (in_list(spec->args_only, key) ||
             strcmp(key, spec->config_opt) == 0)
      r = config_fail(b, UV_EINVAL,
                      "%s: \"%s\" belongs on the command line, not in a file",
                      path, key);
    else
      r = config_file_value(b, o, v, src);
  }
  json_decref(root);
  return r;
}

/* ---- putting it together ---- */

/* Whether a source above `from` sets `name`. */
static int config_overridden(const config_builder_t *b, const char *name,
                             config_from_t from) {
  for (size_t i = 0; i < b->n; i++)
    if (b->entries[i].src.from < from && b->entries[i].name == name)
      return 1;
  return 0;
}

static int config_result(config_builder_t *b, char *argv0, config_args_t *out) {
  size_t n = 1;
  for (size_t i = 0; i < b->n; i++)
    n += b->entries[i].arg != NULL;
  out->argv = malloc((n + 1) * sizeof(*out->argv));
  out->src = malloc(n * sizeof(*out->src));
  if (out->argv == NULL || out->src == NULL)
    return config_nomem(b);
  out->argv[0] = argv0;
  out->src[0] = (config_source_t){CONFIG_FROM_ARGS, NULL};
  int argc = 1;
  /* The file's settings, the environment's, the command line's. */
  static const config_from_t order[] = {CONFIG_FROM_FILE, CONFIG_FROM_ENV,
                                        CONFIG_FROM_ARGS};
  for (size_t k = 0; k < 3; k++)
    for (size_t i = 0; i < b->n; i++) {
      const config_entry_t *e = &b->entries[i];
      if (e->src.from == order[k] && e->arg != NULL &&
          !config_overridden(b, e->name, e->src.from)) {
        out->argv[argc] = e->arg;
        out->src[argc++] = e->src;
      }
    }
  out->argv[argc] = NULL;
  out->argc = argc;
  return 0;
}

void config_args_free(config_args_t *a) {
  for (size_t i = 0; i < a->nowned; i++)
    free(a->owned[i]);
  free(a->owned);
  free(a->argv);
  free(a->src);
  memset(a, 0, sizeof(*a));
}

int config_args_build(const config_spec_t *spec, int argc, char **argv,
                      char **envp, config_args_t *out, char *err,
                      size_t errlen) {
  memset(out, 0, sizeof(*out));
  config_builder_t b = {.spec = spec, .err = err, .errlen = errlen};
  if (errlen > 0)
    err[0] = '\0';
  const char *file = NULL;
  int r = config_from_args(&b, argc, argv, &file);
  if (r == 1) {
    /* As it is: the parser answers the mistake, the help or the version. */
    b.n = 0;
    r = 0;
    out->argv = malloc((size_t)(argc + 1) * sizeof(*out->argv));
    out->src = malloc((size_t)(argc > 0 ? argc : 1) * sizeof(*out->src));
    if (out->argv == NULL || out->src == NULL) {
      r = config_nomem(&b);
    } else {
      memcpy(out->argv, argv, (size_t)argc * sizeof(*argv));
      out->argv[argc] = NULL;
      for (int i = 0; i < argc; i++)
        out->src[i] = (config_source_t){CONFIG_FROM_ARGS, NULL};
      out->argc = argc;
    }
  } else {
    if (r == 0)
      r = config_from_env(&b, envp, &file);
    if (r == 0 && file != NULL)
      r = config_from_file(&b, file, &out->file);
    if (r == 0)
      r = config_result(&b, argc > 0 ? argv[0] : NULL, out);
  }
  free(b.entries);
  out->owned = b.owned;
  out->nowned = b.nowned;
  if (r != 0)
    config_args_free(out);
  return r;
}
