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
#include <stdio.h>

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

/* Set only by fuzz/fuzz_cli.c (default false): fit and predict return CLI_EXIT_OK right after
 * checking their command line, and cli_collect_images records paths without touching the disk. */
extern bool cli_parse_only;

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
/* "reference" or "trained" (--bn). */
bool cli_parse_bn(const char *opt, const char *s, pc_bn_stats *out);
/* "f32" or "bf16" (--precision; also fp32/float32, bfloat16). */
bool cli_parse_precision(const char *opt, const char *s, pc_precision *out);
bool cli_wants_help(int argc, char **argv);
/* --mask-rule full|half (pc_mask_rule_from_name); false after a usage error naming the choices. */
bool cli_parse_mask_rule(const char *opt, const char *s, pc_mask_rule *out);
/* The rule in words for tables and reports, e.g. "full (resized mask value == 255, the reference's)". */
const char *cli_mask_rule_desc(pc_mask_rule rule);
/* The help line shared by eval, benchmark and calibrate. */
#define CLI_MASK_RULE_HELP                                                                                   \
    "  --mask-rule RULE    ground-truth mask pixels that count as anomalous after the resize:\n"             \
    "                      full = value 255 (the reference implementation's; default), half = value >= 128\n"

/* Write s as a JSON string literal (quotes, escapes) to f. */
void cli_json_string(FILE *f, const char *s);

/* Write a float32 array as a NumPy .npy file (atomically: temp file + rename). Returns 0 on success,
 * else prints an error naming the path. */
int cli_write_npy_f32(const char *path, const float *data, int ndim, const int64_t *shape);

/* Inputs a fit or an update could not use: cli_on_image_error (a pc_fit_options / pc_update_options
 * on_image_error, user = a cli_skipped) prints "patchcore: skipped PATH: why" and counts them. */
typedef struct cli_skipped {
    int count;
} cli_skipped;
void cli_on_image_error(void *user, const char *path, pc_status st, const char *msg);

/* A byte count with an optional K/M/G/T suffix (powers of 1024), e.g. --max-memory 6G. */
bool cli_parse_size(const char *opt, const char *s, int64_t *out);

/* ---- shared by fit, benchmark and the other verbs that take images ---------------------------- */

/* Parse one fit option at argv[*i] into opt (--weights --backbone --layers --resize --crop --patch
 * --pre-dim --dim --coreset --coreset-size --sampler --k --seed --reweight --batch --threads --roi).
 * *matched says whether argv[*i] was a fit option; false return = a bad value (already reported). */
bool cli_parse_fit_option(int argc, char **argv, int *i, pc_fit_options *opt, int32_t *threads, bool *matched);

/* An ensemble's per-member lists, as given (NULL: not a list): --backbone, --weights, --resize and
 * --crop separated by commas, --layers groups by semicolons ("2,3;1,2"). */
typedef struct cli_members {
    const char *backbone, *weights, *layers, *resize, *crop;
    char *owned[16]; /* the members' weights paths cut from the list (cli_members_free) */
} cli_members;
/* cli_parse_fit_option that keeps lists in *mem (NULL: lists are not accepted). */
bool cli_parse_fit_option_members(int argc, char **argv, int *i, pc_fit_options *opt, cli_members *mem,
                                  int32_t *threads, bool *matched);
/* The member options: base with each list's i-th item (or its only item). *n = 1 when no list was
 * given. false after an error message. */
bool cli_members_expand(cli_members *mem, const pc_fit_options *base, pc_fit_options *out, int32_t max,
                        int32_t *n);
void cli_members_free(cli_members *mem);
/* The help lines of those options with their defaults. */
void cli_fit_options_help(FILE *out);

/* Tiling options (docs/tiles.md): --tile, --tile-overlap, --tile-scale, --stitch into *t; *given
 * collects which were given (CLI_*_GIVEN bits). */
enum { CLI_TILE_GIVEN = 1, CLI_TILE_OVERLAP_GIVEN = 2, CLI_TILE_SCALE_GIVEN = 4, CLI_STITCH_GIVEN = 8 };
bool cli_parse_tiling_option(int argc, char **argv, int *i, pc_tiling *t, unsigned *given, bool *matched);
void cli_tiling_options_help(FILE *out, bool fit);
/* Decode a region-of-interest mask (--roi FILE; docs/roi.md) to 8-bit grey as PIL's convert("L")
 * does (any PNG/JPEG, colour included) and check that some pixel is non-zero; false after an error
 * naming opt and the file. The caller frees out with pc_image_free. */
bool cli_load_roi(const char *opt, const char *path, pc_image *out);

/* A list of image paths collected from files and directories (walked recursively, sorted, keeping
 * .png .jpg .jpeg .bmp files case-insensitively; files named explicitly are always kept). */
typedef struct cli_paths {
    char **paths;
    size_t n, cap;
} cli_paths;
/* Returns 0, or -1 after printing an error naming the path that could not be read. */
int cli_collect_images(cli_paths *out, const char *path);
void cli_paths_free(cli_paths *p);

/* Progress on stderr: shown when stderr is a terminal unless --no-progress/--quiet; a line
 * "stage done/total (rate/s, ETA)" rewritten in place. The callback matches pc_progress_fn. */
typedef struct cli_progress {
    bool enabled;
    double t0;
    char stage[32];
    double last;
    double mark; /* time of the latest report of any stage (or of init): where the next stage starts */
} cli_progress;
void cli_progress_init(cli_progress *p, bool enabled);
int cli_progress_cb(void *user, const char *stage, int64_t done, int64_t total);
void cli_progress_done(cli_progress *p);
double cli_now(void);

/* Make a file name for an input path that is unique within one run: the path with '/' turned into
 * '_' and the extension replaced by ext; "-2", "-3"... appended on a collision. */
typedef struct cli_names {
    char **used;
    size_t n, cap;
} cli_names;
const char *cli_unique_name(cli_names *names, const char *path, const char *ext, char *buf, size_t size);
void cli_names_free(cli_names *names);

/* Several images in flight (cli/jobs.c): work(user, i, slot) for every item on `jobs` threads, each
 * with pc_set_num_threads_local(threads_each), and emit(user, i, slot) on the calling thread for
 * i = 0, 1, ... in order, each right after its work is done. At most `window` items (>= jobs) are
 * between work and emit; slot (< window) names the one's storage. jobs <= 1: work then emit per
 * item on this thread. Returns 0, or -1 when out of memory (nothing was run). */
typedef void (*cli_job_work_fn)(void *user, size_t i, size_t slot);
typedef void (*cli_job_emit_fn)(void *user, size_t i, size_t slot);
int cli_jobs_ordered(int32_t jobs, int32_t threads_each, size_t n, size_t window, cli_job_work_fn work,
                     cli_job_emit_fn emit, void *user);


#endif
