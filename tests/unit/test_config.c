/* test_config.c — unit tests of the program's configuration reader
 * (config.c) with an option table of its own, since the module knows no
 * wshub option: the argument vector built from a file, the environment and
 * the command line (order, precedence, lists replaced whole, flags, false
 * and empty lists hiding a lower source, numbers written out), where each
 * argument came from, variable names that name no option, the command line
 * passed on untouched when getopt_long would complain about it or it asks
 * for help, and the exact messages of a file's mistakes.
 *
 * The test owns its temporary files (removed at the end) and every
 * config_args_t it builds.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "unit.h"

static const struct option conf_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"port", required_argument, NULL, 'p'},
    {"log-level", required_argument, NULL, 'l'},
    {"origin", required_argument, NULL, 'o'},
    {"echo", no_argument, NULL, 'e'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char *const conf_repeatable[] = {"origin", NULL};
static const char *const conf_args_only[] = {"help", NULL};
static const config_spec_t conf_spec = {
    conf_opts, ":h", conf_repeatable, conf_args_only, "config", "T_",
};

/* Writes text to a new temporary file; its path goes into path. */
static void conf_file(char *path, size_t len, const char *text) {
  snprintf(path, len, "/tmp/wshub-test-config-XXXXXX");
  int fd = mkstemp(path);
  if (fd >= 0) {
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
      path[0] = '\0';
    close(fd);
  }
}

/* The built vector after argv[0], as one string "a b c". */
static void conf_join(const config_args_t *a, char *out, size_t len) {
  out[0] = '\0';
  for (int i = 1; i < a->argc; i++) {
    if (i > 1)
      strncat(out, " ", len - strlen(out) - 1);
    strncat(out, a->argv[i], len - strlen(out) - 1);
  }
}

/* Builds from argv/envp; returns the code, the joined vector in got and
 * the message in err. */
static int conf_build(char **argv, char **envp, config_args_t *a, char *got,
                      size_t glen, char *err, size_t elen) {
  int argc = 0;
  while (argv[argc] != NULL)
    argc++;
  int r = config_args_build(&conf_spec, argc, argv, envp, a, err, elen);
  if (r == 0)
    conf_join(a, got, glen);
  else
    got[0] = '\0';
  return r;
}

static void test_precedence(unit_t *T, const char *file) {
  char got[512], err[256];
  config_args_t a;
  /* The file alone, in its own order. */
  char *argv1[] = {"prog", "--config", (char *)file, NULL};
  char *env0[] = {NULL};
  CHECK_EQ_INT(conf_build(argv1, env0, &a, got, sizeof(got), err, sizeof(err)),
               0);
  CHECK_EQ_STR(got, "--port=8080 --log-level=info --origin=https://a "
                    "--origin=https://b --echo");
  CHECK_EQ_STR(a.file, file);
  CHECK_EQ_INT(a.src[0].from, CONFIG_FROM_ARGS);
  CHECK_EQ_INT(a.src[1].from, CONFIG_FROM_FILE);
  CHECK_EQ_STR(a.src[1].label, file);
  CHECK_EQ_STR(a.argv[0], "prog");
  CHECK(a.argv[a.argc] == NULL);
  config_args_free(&a);

  /* The environment replaces the file's port and list, keeps the rest;
   * the command line replaces the environment's log level. */
  char *argv2[] = {"prog", "--log-level", "debug", "--config=", NULL};
  argv2[3] = malloc(strlen(file) + 10);
  sprintf(argv2[3], "--config=%s", file);
  char *env2[] = {
      "PATH=/bin", "T_PORT=9090", "T_LOG_LEVEL=warn", "T_ORIGIN=x:// , ,y://",
      "T_BIN=/x",  "T_HELP=true", "T_port=1",         NULL};
  CHECK_EQ_INT(conf_build(argv2, env2, &a, got, sizeof(got), err, sizeof(err)),
               0);
  CHECK_EQ_STR(got, "--echo --port=9090 --origin=x:// --origin=y:// "
                    "--log-level=debug");
  CHECK_EQ_INT(a.src[1].from, CONFIG_FROM_FILE);
  CHECK_EQ_INT(a.src[2].from, CONFIG_FROM_ENV);
  CHECK_EQ_STR(a.src[2].label, "T_PORT");
  CHECK_EQ_STR(a.src[3].label, "T_ORIGIN");
  CHECK_EQ_INT(a.src[5].from, CONFIG_FROM_ARGS);
  CHECK(a.src[5].label == NULL);
  config_args_free(&a);

  /* false and an empty list hide what the file says; the command line's
   * list replaces the file's. */
  char *env3[] = {"T_ECHO=false", "T_CONFIG=", NULL};
  env3[1] = malloc(strlen(file) + 10);
  sprintf(env3[1], "T_CONFIG=%s", file);
  char *argv3[] = {"prog", "--origin", "z://", NULL};
  CHECK_EQ_INT(conf_build(argv3, env3, &a, got, sizeof(got), err, sizeof(err)),
               0);
  CHECK_EQ_STR(got, "--port=8080 --log-level=info --origin=z://");
  CHECK_EQ_STR(a.file, file);
  config_args_free(&a);
  char *env4[] = {"T_ORIGIN=", env3[1], NULL};
  CHECK_EQ_INT(conf_build(argv1, env4, &a, got, sizeof(got), err, sizeof(err)),
               0);
  CHECK_EQ_STR(got, "--port=8080 --log-level=info --echo");
  config_args_free(&a);
  free(argv2[3]);
  free(env3[1]);
}

static void test_untouched(unit_t *T) {
  char got[512], err[256];
  config_args_t a;
  /* Mistakes and help: the command line as it is, no file read (this one
   * does not exist), no variable looked at (this one is bad). */
  char *env[] = {"T_ECHO=maybe", "T_CONFIG=/nonexistent/c.json", NULL};
  char *cases[][5] = {
      {"prog", "--bogus", "--port", "1", NULL},
      {"prog", "--port", NULL},
      {"prog", "stray", NULL},
      {"prog", "--port", "1", "-h", NULL},
      {"prog", "--help", NULL},
  };
  const char *want[] = {"--bogus --port 1", "--port", "stray", "--port 1 -h",
                        "--help"};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    CHECK_EQ_INT(
        conf_build(cases[i], env, &a, got, sizeof(got), err, sizeof(err)), 0);
    CHECK_EQ_STR(got, want[i]);
    CHECK(a.file == NULL);
    for (int k = 0; k < a.argc; k++)
      CHECK_EQ_INT(a.src[k].from, CONFIG_FROM_ARGS);
    config_args_free(&a);
  }
  /* Without mistakes the same variables are read. */
  char *ok[] = {"prog", "--port", "1", NULL};
  CHECK_EQ_INT(conf_build(ok, env, &a, got, sizeof(got), err, sizeof(err)),
               UV_EINVAL);
  CHECK_EQ_STR(err, "invalid value 'maybe' for T_ECHO: expected true or false");
  CHECK(a.argv == NULL && a.argc == 0);
}

static void test_file_errors(unit_t *T) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"{\"port\": 1.5e3, \"origin\": [\"a://\", 7]}", NULL},
      {"{\"port\": true}", "\"port\" must be a string or a number"},
      {"{\"port\": [1]}", "\"port\" takes one value, not a list"},
      {"{\"origin\": [[\"a://\"]]}",
       "\"origin\" must be a string or a list of strings"},
      {"{\"origin\": null}",
       "\"origin\" must be a string or a list of strings"},
      {"{\"echo\": 1}", "\"echo\" must be true or false"},
      {"{\"ports\": 1}", "unknown option \"ports\""},
      {"{\"help\": true}",
       "\"help\" belongs on the command line, not in a file"},
      {"{\"config\": \"x\"}",
       "\"config\" belongs on the command line, not in a file"},
      {"[7]", "expected a JSON object of option names and values"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char path[64], got[512], err[256], want[512];
    conf_file(path, sizeof(path), cases[i].text);
    char *argv[] = {"prog", "--config", path, NULL};
    char *env[] = {NULL};
    config_args_t a;
    int r = conf_build(argv, env, &a, got, sizeof(got), err, sizeof(err));
    if (cases[i].want == NULL) {
      CHECK_EQ_INT(r, 0);
      CHECK_EQ_STR(got, "--port=1500 --origin=a:// --origin=7");
      config_args_free(&a);
    } else {
      snprintf(want, sizeof(want), "%s: %s", path, cases[i].want);
      CHECK_EQ_INT(r, UV_EINVAL);
      CHECK_EQ_STR(err, want);
    }
    unlink(path);
  }
  char got[512], err[256];
  config_args_t a;
  char *argv[] = {"prog", "--config", "/nonexistent/c.json", NULL};
  char *env[] = {NULL};
  CHECK_EQ_INT(conf_build(argv, env, &a, got, sizeof(got), err, sizeof(err)),
               UV_ENOENT);
  CHECK_EQ_STR(err,
               "/nonexistent/c.json: cannot read: No such file or directory");
}

int main(void) {
  unit_t t = {0}, *T = &t;
  char file[64];
  conf_file(file, sizeof(file),
            "{\"port\": 8080, \"log-level\": \"info\",\n"
            " \"origin\": [\"https://a\", \"https://b\"], \"echo\": true}\n");
  CHECK(file[0] != '\0');
  test_precedence(T, file);
  test_untouched(T);
  test_file_errors(T);
  unlink(file);
  return unit_finish(T);
}
