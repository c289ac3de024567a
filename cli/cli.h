/*
 * cli.h - what the patchcore command's verbs share: exit codes, the verb table entry, option parsing
 * helpers and .npy output. The library never prints; all printing lives in cli/.
 */
#ifndef PC_CLI_H
#define PC_CLI_H

#include "patchcore.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes (documented in README.md and docs/cli.md). */
enum {
    CLI_EXIT_OK = 0,        /* everything succeeded */
    CLI_EXIT_ERROR = 1,     /* the job failed (bad weights, unwritable output, ...) */
    CLI_EXIT_USAGE = 2,     /* bad command line */
    CLI_EXIT_PARTIAL = 3,   /* some inputs of a batch failed; the others were processed */
    CLI_EXIT_ANOMALY = 4    /* with --fail-on-anomaly: at least one image was judged anomalous */
};

typedef struct cli_verb {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the verb name */
} cli_verb;

/* Print "patchcore: " + message to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the library's last error after a context prefix: "patchcore: <ctx>: <last error>". */
void cli_error_status(pc_status st, const char *ctx);

/* Option helpers. Each returns false (after printing a usage error) when the value is bad.
 * cli_take_value handles "--opt VALUE" and "--opt=VALUE"; *i is advanced past what was used. */
bool cli_match(const char *arg, const char *name);
bool cli_take_value(int argc, char **argv, int *i, const char *name, const char **value);
bool cli_parse_int(const char *opt, const char *s, long lo, long hi, int32_t *out);
bool cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out);
bool cli_wants_help(int argc, char **argv);

/* Write a float32 array as a NumPy .npy file (atomically: temp file + rename). Returns 0 on success,
 * else prints an error naming the path. */
int cli_write_npy_f32(const char *path, const float *data, int ndim, const int64_t *shape);

#endif
