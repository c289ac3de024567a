/*
 * testutil.h - what every C test shares: where reference tensors and ../shared live, a .npy reader
 * for the arrays the Python oracle scripts (tests/ref/gen_*.py) write, and error measures.
 */
#ifndef PC_TESTUTIL_H
#define PC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "patchcore.h"

/* A .npy array as read: dtype is the numpy descr ("<f4", "|u1", "<i8", "<i4", "<f8"). */
typedef struct npy_array {
    char dtype[8];
    int ndim;
    int64_t shape[8];
    int64_t count;   /* product of shape */
    void *data;      /* count elements of dtype, malloc'd */
} npy_array;

/* Read PATH (absolute or relative to the reference directory). Returns 0 on success. */
int npy_load(const char *path, npy_array *out);
void npy_free(npy_array *a);

/* $PC_REF_DIR/<rel> into buf; returns buf. */
const char *ref_path(char *buf, size_t size, const char *fmt, ...);
/* $PC_SHARED_DIR/<rel> into buf; returns NULL (and prints why) when ../shared is absent. */
const char *shared_path(char *buf, size_t size, const char *rel);
/* True when the reference directory has this file (generators ran). */
int ref_exists(const char *rel);

/* max |a-b| / max |b| over n floats (the "relative error" of the project's tolerances). */
double max_rel_err(const float *a, const float *b, size_t n);
double max_abs_diff(const float *a, const float *b, size_t n);

/* Skip the current cmocka test with a message (prints "SKIP: why"). */
#define TEST_SKIP_MSG(...) do { print_message("SKIP: " __VA_ARGS__); print_message("\n"); skip(); } while (0)

/* ---- Tie-robust checking of a greedy coreset (METHOD.md §4) --------------------------------------
 * Two fp32 implementations of the greedy loop (ours, torch's, on different CPUs) may order two
 * candidates whose distances agree to within rounding differently, and every later pick then differs.
 * So a selection is not compared index for index with another library's; instead the selection is
 * replayed in float64 on the oracle's features, driven by the checked picks, and every pick must be
 * the replay's maximum up to a proven bound on the fp32 error (derivation: testutil.c and
 * docs/method-implementation.md, "Checking a coreset across libraries and CPUs"). */

/* q (n x p, double) = x (n x d, float) times the projection, in double. proj_pxd: the projection is
 * stored (p x d) (nn.Linear weight), else (d x p). */
double *project_f64(const float *x, int64_t n, int32_t d, const float *proj, int32_t p, int proj_pxd);

/* Per point ||pf_i - q_i|| (double): how far the fp32 projection an implementation ranked (pf, n x p)
 * is from the exact one. */
double *projection_slack(const float *pf, const double *q, int64_t n, int32_t p);

typedef struct greedy_replay {
    int64_t off_argmax;        /* picks that were not the replay's argmax: proven near-ties */
    double worst;              /* max over steps of (replay max - replay distance of the pick) / bound */
    double max_rel_gap;        /* max over steps of that gap / the replay max */
    int64_t other_first_diff;  /* first step where `other` differs from the picks (n: nowhere) */
    double other_ratio;        /* at that step, the other pick's gap / its bound (-1: no divergence) */
} greedy_replay;

/* Replays the greedy selection on q (N x P, the exact projection of the oracle's features) from the
 * start points, taking `picks` (n) as the choices, and checks at every step
 *     max_i D_i - D_pick <= E_pick + E_argmax,   E_i = (1 + rho)(slack_i + S) + rho D_i,
 * D the replay's current distances, slack the checked implementation's projection_slack, S the
 * largest slack among the starts and the picks so far, rho greedy_fp32_rho(P, n_starts). If `other`
 * (another implementation's n picks, with its own slack) is given, its first divergence from the picks
 * (the only step where both are replayed from the same state) is checked the same way. Returns -1 when
 * every step passes, else the failing step (printed). */
int64_t greedy_replay_check(const char *what, const double *q, int64_t N, int32_t P, const int64_t *starts,
                            int32_t n_starts, int64_t n, const int64_t *picks, const double *slack,
                            const int64_t *other, const double *other_slack, greedy_replay *out);

/* The same for a greedy coreset continued from kept points (pc_coreset_greedy_continue): the replay
 * starts from D0 (the exact distances to the nearest kept point), e0 the measured difference of the
 * implementation's initial distances from D0, S0 the largest projection slack of the kept points.
 * *n_off_argmax counts the proven near-ties. Returns -1 when every pick passes, else the failing step. */
int64_t greedy_replay_check_continue(const char *what, const double *q, int64_t N, int32_t P, const double *D0,
                                     const double *e0, double S0, int64_t n, const int64_t *picks, const double *slack,
                                     int64_t *n_off_argmax);

/* d[i] = min over the n_fixed rows of fixed of the float64 distance to row i of q (all p columns). */
double *min_dist_f64(const double *q, int64_t n, const double *fixed, int64_t n_fixed, int32_t p);

/* Relative error bound of one fp32 greedy distance (direct differences over P coordinates, any
 * summation order, FMA or not, sqrt) and of the mean over n_starts of them. */
double greedy_fp32_rho(int32_t P, int32_t n_starts);

/* Copy model file src to dst with its metadata line "key = ..." removed (value NULL) or replaced by
 * "key = value"; the tensors and the container version are kept. Fails the test when the key is
 * absent from src. */
void tu_rewrite_meta_key(const char *src, const char *dst, const char *key, const char *value);

/* pc_backbone_load of reference file DIR/REL (arch, layer mask) must fail with `want`, leave the
 * backbone NULL, and say the file's name and every phrase of the NULL-terminated list. */
/* Two views of bb (pc_backbone_view: shared weights, own workspace or plan) forwarding images 0 and 1
 * of `images` (2 x 3 x h x w) on two threads at once, three times each, give bit for bit layer `layer`
 * as the parent computes it for each image alone; a view holds no weights. `what` starts the message. */
void tu_check_views_concurrent(pc_backbone *bb, const float *images, int32_t h, int32_t w, int32_t layer,
                               const char *what);

void tu_expect_load_fail(const char *dir, const char *rel, int arch, uint32_t mask, int want,
                         const char *const phrases[]);

#endif
