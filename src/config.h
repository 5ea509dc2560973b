/* config.h — the wshub program's settings from a configuration file and the
 * environment, turned into command-line arguments for main.c's own option
 * parser.
 *
 * The program only (main.c); the library (wshub.h) never reads files or the
 * environment: embedders fill a wshub_config_t themselves.
 *
 * Nothing here knows a single wshub option: the caller hands over its
 * getopt_long table, and every long option in it can be set as
 *   - a key of the JSON object in the --config FILE ("port": 8080,
 *     "echo": true, "allow-origin": ["https://a", "https://b"]);
 *   - an environment variable WSHUB_<NAME>, the long name uppercased with
 *     dashes turned into underscores (WSHUB_PORT=8080, WSHUB_ECHO=true,
 *     WSHUB_ALLOW_ORIGIN=https://a,https://b).
 * config_args_build() returns one argument vector, "--name=value" or
 * "--name" each, that main.c runs through the very same getopt_long loop
 * and per-option checks as the command line: the file's settings first,
 * then the environment's, then the command line's, each option taken
 * from the highest of these that sets it (command line > environment >
 * file > defaults). A repeatable option's list is replaced whole by a higher
 * source, never merged. config_args_t.src tells, for each element, where it
 * came from, so that a bad value names the file and key or the variable.
 *
 * Ownership: config_args_t owns the vector, every string in it and the
 * labels; the strings stay valid (main.c keeps pointers to values) until
 * config_args_free(). The option table and the caller's argv and environ
 * are only read.
 */
#ifndef WSHUB_CONFIG_H
#define WSHUB_CONFIG_H

#include <getopt.h>
#include <stddef.h>

typedef enum {
  CONFIG_FROM_ARGS, /* the command line */
  CONFIG_FROM_ENV,  /* label: the variable, e.g. "WSHUB_PORT" */
  CONFIG_FROM_FILE, /* label: the file's path as given */
} config_from_t;

typedef struct {
  config_from_t from;
  const char *label; /* NULL for the command line */
} config_source_t;

typedef struct {
  /* What the program is and accepts; read only. */
  const struct option *opts; /* getopt_long's table, {NULL} at its end */
  const char *shortopts;     /* getopt_long's optstring, e.g. ":hV" */
  /* Options that may be given several times, NULL-terminated: arrays in
   * the file, comma-separated lists in the environment. */
  const char *const *repeatable;
  /* Options of the command line only (help, version), NULL-terminated:
   * an error in the file, ignored in the environment. */
  const char *const *args_only;
  const char *config_opt; /* the long option naming the file: "config" */
  const char *env_prefix; /* "WSHUB_" */
} config_spec_t;

typedef struct {
  int argc;
  char **argv;          /* argv[0] then the settings; argv[argc] is NULL */
  config_source_t *src; /* argc elements: where argv[i] came from */
  const char *file;     /* the configuration file read, or NULL */
  /* private */
  char **owned;
  size_t nowned;
} config_args_t;

/* Fills `out` from the command line (argc, argv), the environment (envp,
 * NULL-terminated "NAME=value" strings) and the file named by the command
 * line's --config (else by <prefix>CONFIG). When the command line itself
 * has a mistake for getopt_long (an unknown option, a missing value, a
 * stray argument) or asks for help or the version, neither the file nor the
 * environment is read and out->argv is argv as it is, so that the caller's
 * parser answers exactly as without this module. Returns 0, or a negative
 * error code with a one-line message (no "wshub: " prefix, no newline) in
 * err; out is then empty and needs no config_args_free(). Uses getopt_long
 * (and so its globals): set optind = 0 before parsing out->argv. */
int config_args_build(const config_spec_t *spec, int argc, char **argv,
                      char **envp, config_args_t *out, char *err,
                      size_t errlen);

void config_args_free(config_args_t *a);

#endif
