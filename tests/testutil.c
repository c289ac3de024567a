/*
 * testutil.c - .npy reading and comparison helpers for the C tests (see testutil.h).
 */
#include "testutil.h"

#include "modelfile.h"
#include <pthread.h>
#include "backbone_internal.h"
#include "patchcore.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *ref_path(char *buf, size_t size, const char *fmt, ...) {
    const char *dir = getenv("PC_REF_DIR");
    char rel[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(buf, size, "%s/%s", dir ? dir : "build/ref", rel);
    return buf;
}

int ref_exists(const char *rel) {
    char p[2048];
    struct stat st;
    return stat(ref_path(p, sizeof p, "%s", rel), &st) == 0;
}

const char *shared_path(char *buf, size_t size, const char *rel) {
    const char *dir = getenv("PC_SHARED_DIR");
    if (!dir || !*dir) dir = "../shared";
    snprintf(buf, size, "%s/%s", dir, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        print_message("note: %s is absent (set PATCHCORE_SHARED at configure time or PC_SHARED_DIR)\n", buf);
        return NULL;
    }
    return buf;
}

static size_t dtype_size(const char *d) {
    size_t n = strlen(d);
    return n >= 3 ? (size_t)atoi(d + 2) : 0;
}

int npy_load(const char *path, npy_array *out) {
    memset(out, 0, sizeof *out);
    char full[2048];
    if (path[0] != '/') path = ref_path(full, sizeof full, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) { print_error("cannot open %s\n", path); return -1; }
    unsigned char magic[10];
    if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0) { fclose(f); return -1; }
    size_t hlen;
    if (magic[6] == 1) hlen = magic[8] | (magic[9] << 8);
    else {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) { fclose(f); return -1; }
        hlen = magic[8] | (magic[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
    }
    char *hdr = calloc(1, hlen + 1);
    if (fread(hdr, 1, hlen, f) != hlen) { free(hdr); fclose(f); return -1; }
    char *d = strstr(hdr, "'descr': '");
    char *fo = strstr(hdr, "'fortran_order': ");
    char *sh = strstr(hdr, "'shape': (");
    if (!d || !fo || !sh || strncmp(fo + 17, "False", 5) != 0) { free(hdr); fclose(f); return -1; }
    d += 10;
    size_t i = 0;
    while (*d != '\'' && i < sizeof out->dtype - 1) out->dtype[i++] = *d++;
    sh += 10;
    out->count = 1;
    while (*sh && *sh != ')') {
        while (*sh == ' ' || *sh == ',') sh++;
        if (*sh == ')') break;
        long long v = strtoll(sh, &sh, 10);
        out->shape[out->ndim++] = v;
        out->count *= v;
    }
    free(hdr);
    size_t es = dtype_size(out->dtype);
    out->data = malloc(out->count * es + 1);
    size_t got = fread(out->data, es, (size_t)out->count, f);
    fclose(f);
    if (got != (size_t)out->count) { npy_free(out); return -1; }
    return 0;
}

void npy_free(npy_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

double max_rel_err(const float *a, const float *b, size_t n) {
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref = fmax(ref, fabs((double)b[i]));
    return max_abs_diff(a, b, n) / (ref > 0 ? ref : 1.0);
}

/* ---- Tie-robust greedy coreset checks ------------------------------------------------------------
 *
 * Error bound (u = 2^-24, gamma_m = m u / (1 - m u), Higham's notation).
 * An fp32 implementation ranks d^(i,j) = fl(sqrt(fl(sum_k fl(fl(p_ik - p_jk)^2)))) computed from its
 * fp32 projected vectors p (ours: pc_coreset_project by OpenBLAS SGEMM then AVX2 differences; torch:
 * features @ W.T then cdist without the mm path). Every difference and square is one rounding
 * (gamma_3 on a squared term: (1+e1)^2 (1+e2); a fused multiply-add only removes roundings), and a sum
 * of P non-negative terms in any order or tree is within gamma_(P-1) of the exact sum, so the computed
 * square is S (1 + t), |t| <= gamma_(P+2); the square root halves that and adds one rounding:
 *     |d^ - ||p_i - p_j||| <= rho_d ||p_i - p_j||,   rho_d = gamma_(P+2) / 2 + u   (+ 2nd order).
 * The initial distance is the mean over s start points (a sum of s positive terms, gamma_(s-1), and a
 * division, u): rho = 1.01 (rho_d + gamma_s) covers both with a 1% allowance for second-order terms
 * (P = 128, s = 10: rho = 4.6e-6). The exact distance between the implementation's vectors differs
 * from the exact distance between the oracle's q = exact projection of the oracle's features by at most
 * slack_i + slack_j, slack_i = ||p_i - q_i|| (triangle inequality), which the test measures: it
 * includes the projection GEMM's rounding and any difference between the two sides' features. So each
 * computed candidate distance a^_j of point i lies in [(a_j - s)(1 - rho), (a_j + s)(1 + rho)], a_j its
 * replayed float64 value and s = slack_i + S, S >= slack of every centre so far; both ends increase
 * with a_j, so the running minimum (and the mean) obeys the same interval:
 *     |D^_i - D_i| <= E_i = (1 + rho)(slack_i + S) + rho D_i.
 * The implementation picked p with D^_p >= D^_j for all j, so D_p + E_p >= D^_p >= D^_i* >= D_i* - E_i*:
 *     max D - D_p <= E_p + E_i*.
 * A pick that breaks this cannot be explained by rounding; one that meets it while not being the
 * replay's argmax is a proven near-tie, and the replay goes on from that pick. The float64 replay's
 * own error (~1e-16 relative) is covered by adding 1e-12 D_i. */
double greedy_fp32_rho(int32_t P, int32_t n_starts) {
    const double u = 0x1p-24;
#define GAMMA(m) ((m) * u / (1 - (m) * u))
    return 1.01 * (GAMMA((double)P + 2) / 2 + u + GAMMA((double)n_starts));
#undef GAMMA
}

double *project_f64(const float *x, int64_t n, int32_t d, const float *proj, int32_t p, int proj_pxd) {
    double *w = malloc(sizeof(double) * (size_t)d * p), *q = malloc(sizeof(double) * (size_t)n * p);
    for (int32_t c = 0; c < d; c++) /* w (p x d) */
        for (int32_t k = 0; k < p; k++) w[(size_t)k * d + c] = proj_pxd ? proj[(size_t)k * d + c] : proj[(size_t)c * p + k];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int32_t k = 0; k < p; k++) {
            double s = 0;
            const float *xi = x + (size_t)i * d;
            const double *wk = w + (size_t)k * d;
            for (int32_t c = 0; c < d; c++) s += (double)xi[c] * wk[c];
            q[(size_t)i * p + k] = s;
        }
    free(w);
    return q;
}

double *projection_slack(const float *pf, const double *q, int64_t n, int32_t p) {
    double *s = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        double a = 0;
        for (int32_t k = 0; k < p; k++) {
            double t = (double)pf[(size_t)i * p + k] - q[(size_t)i * p + k];
            a += t * t;
        }
        s[i] = sqrt(a);
    }
    return s;
}

static double dist_f64(const double *a, const double *b, int32_t p) {
    double s = 0;
    for (int32_t k = 0; k < p; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return sqrt(s);
}

/* The replay from initial distances D (owned; freed here) with the running slack maxima S, So; e0 (may
 * be NULL) the measured error of the initial distances (see greedy_replay_check_continue). */
static int64_t replay(const char *what, const double *q, int64_t N, int32_t P, double *D, const double *e0, double rho,
                      double S, double So, int64_t n, const int64_t *picks, const double *slack, const int64_t *other,
                      const double *other_slack, greedy_replay *out) {
    const double eps64 = 1e-12;
    char *taken = calloc((size_t)N, 1);
    memset(out, 0, sizeof *out);
    out->other_first_diff = n;
    out->other_ratio = -1;
    int64_t fail = -1;
    for (int64_t t = 0; t < n && fail < 0; t++) {
        int64_t am = 0;
        for (int64_t i = 1; i < N; i++)
            if (D[i] > D[am]) am = i;
        const double M = D[am];
        const int64_t p = picks[t];
        if (p < 0 || p >= N || taken[p]) {
            print_error("%s: pick %lld is %lld: out of range or chosen before\n", what, (long long)t, (long long)p);
            fail = t;
            break;
        }
#define BOUND_E(sl, Sx, i) ((e0 ? e0[i] : 0) + (1 + rho) * ((sl)[i] + (Sx)) + (rho + eps64) * D[i])
        double gap = M - D[p], bound = BOUND_E(slack, S, p) + BOUND_E(slack, S, am);
        if (gap > bound) {
            print_error("%s: pick %lld = %lld has replay distance %.9g, the maximum is %.9g at %lld: gap %.3g "
                        "exceeds the fp32 bound %.3g, not a near-tie\n", what, (long long)t, (long long)p, D[p], M,
                        (long long)am, gap, bound);
            fail = t;
        }
        if (p != am) out->off_argmax++;
        if (bound > 0) out->worst = fmax(out->worst, gap / bound);
        if (M > 0) out->max_rel_gap = fmax(out->max_rel_gap, gap / M);
        if (other && out->other_first_diff == n && other[t] != p) {
            const int64_t o = other[t];
            out->other_first_diff = t;
            if (o < 0 || o >= N) {
                print_error("%s: the other selection's pick %lld is %lld, out of range\n", what, (long long)t,
                            (long long)o);
                fail = t;
            } else {
                double og = M - D[o], ob = BOUND_E(other_slack, So, o) + BOUND_E(other_slack, So, am);
                out->other_ratio = ob > 0 ? og / ob : (og > 0 ? INFINITY : 0);
                if (og > ob) {
                    print_error("%s: the other selection parts at pick %lld (%lld, ours %lld) with replay gap %.3g "
                                "above its fp32 bound %.3g: not a near-tie\n", what, (long long)t, (long long)o,
                                (long long)p, og, ob);
                    fail = t;
                }
            }
        }
#undef BOUND_E
        taken[p] = 1;
        S = fmax(S, slack[p]);
        if (other) So = fmax(So, other_slack[p]);
        const double *qp = q + (size_t)p * P;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N; i++) D[i] = fmin(D[i], dist_f64(q + (size_t)i * P, qp, P));
    }
    free(D), free(taken);
    return fail;
}

int64_t greedy_replay_check(const char *what, const double *q, int64_t N, int32_t P, const int64_t *starts,
                            int32_t n_starts, int64_t n, const int64_t *picks, const double *slack,
                            const int64_t *other, const double *other_slack, greedy_replay *out) {
    double *D = malloc(sizeof(double) * (size_t)N);
    double S = 0, So = 0;
    for (int32_t s = 0; s < n_starts; s++) {
        S = fmax(S, slack[starts[s]]);
        if (other) So = fmax(So, other_slack[starts[s]]);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        double m = 0;
        for (int32_t s = 0; s < n_starts; s++) m += dist_f64(q + (size_t)i * P, q + (size_t)starts[s] * P, P);
        D[i] = m / n_starts;
    }
    return replay(what, q, N, P, D, NULL, greedy_fp32_rho(P, n_starts), S, So, n, picks, slack, other, other_slack,
                  out);
}

int64_t greedy_replay_check_continue(const char *what, const double *q, int64_t N, int32_t P, const double *D0,
                                     const double *e0, double S0, int64_t n, const int64_t *picks, const double *slack,
                                     int64_t *n_off_argmax) {
    /* From given initial distances: D0[i] the exact distance from point i to the nearest kept point,
     * e0[i] how far the implementation's initial value is from it (measured), S0 the largest slack of
     * the kept points' projections. A running minimum of values each within its own error of the exact
     * one is within the largest of those errors, so E_i = e0_i + (1 + rho)(slack_i + S) + rho D_i
     * bounds |D^_i - D_i| at every step, rho that of a single distance. */
    double *D = malloc(sizeof(double) * (size_t)N);
    memcpy(D, D0, sizeof(double) * (size_t)N);
    greedy_replay r;
    int64_t fail = replay(what, q, N, P, D, e0, greedy_fp32_rho(P, 1), S0, 0, n, picks, slack, NULL, NULL, &r);
    *n_off_argmax = r.off_argmax;
    return fail;
}

double *min_dist_f64(const double *q, int64_t n, const double *fixed, int64_t n_fixed, int32_t p) {
    double *d = malloc(sizeof(double) * (size_t)n);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double m = INFINITY;
        for (int64_t j = 0; j < n_fixed; j++) m = fmin(m, dist_f64(q + (size_t)i * p, fixed + (size_t)j * p, p));
        d[i] = m;
    }
    return d;
}

void tu_rewrite_meta_key(const char *src, const char *dst, const char *key, const char *value) {
    pc_modelfile *mf = NULL;
    assert_int_equal(pc_modelfile_open(src, &mf), PC_OK);
    const char *meta = pc_modelfile_meta_text(mf);
    const size_t klen = strlen(key);
    char *out = malloc(strlen(meta) + klen + (value ? strlen(value) : 0) + 8);
    assert_non_null(out);
    size_t at = 0;
    int found = 0;
    for (const char *line = meta; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
        if (strncmp(line, key, klen) == 0 && strncmp(line + klen, " = ", 3) == 0) {
            found = 1;
            if (value) at += (size_t)sprintf(out + at, "%s = %s\n", key, value);
        } else {
            memcpy(out + at, line, n);
            at += n;
        }
        line += n;
    }
    out[at] = 0;
    assert_true(found);
    size_t nt = pc_modelfile_tensor_count(mf);
    pc_mf_tensor *t = malloc(nt * sizeof *t);
    assert_non_null(t);
    for (size_t i = 0; i < nt; i++) t[i] = *pc_modelfile_tensor_at(mf, i);
    assert_int_equal(pc_modelfile_write_version(dst, out, t, nt, pc_modelfile_version(mf)), PC_OK);
    free(t), free(out);
    pc_modelfile_close(mf);
}

void tu_expect_load_fail(const char *dir, const char *rel, int arch, uint32_t mask, int want,
                         const char *const phrases[]) {
    char p[512];
    pc_backbone *bb = (pc_backbone *)1;
    pc_status st = pc_backbone_load(ref_path(p, sizeof p, "%s/%s", dir, rel), (pc_arch)arch, mask, &bb);
    print_message("%s as %s: %s\n", rel, pc_arch_name((pc_arch)arch), pc_last_error());
    assert_int_equal(st, want);
    assert_null(bb);
    assert_non_null(strstr(pc_last_error(), rel)); /* names the file */
    for (int i = 0; phrases[i]; i++) assert_non_null(strstr(pc_last_error(), phrases[i]));
}

typedef struct view_job {
    pc_backbone *view;
    const float *in;
    int32_t h, w, layer;
    float *out;
    const float *want;
    size_t count;
    int ok;
} view_job;

static void *view_run(void *arg) {
    view_job *j = arg;
    float *outs[4] = {0};
    outs[j->layer - 1] = j->out;
    j->ok = 1;
    for (int r = 0; r < 3 && j->ok; r++) {
        memset(j->out, 0, j->count * sizeof(float));
        j->ok = pc_backbone_forward(j->view, j->in, 1, j->h, j->w, PC_LAYER(j->layer), outs) == PC_OK &&
                memcmp(j->out, j->want, j->count * sizeof(float)) == 0;
    }
    return NULL;
}

void tu_check_views_concurrent(pc_backbone *bb, const float *images, int32_t h, int32_t w, int32_t layer,
                               const char *what) {
    int32_t oh, ow;
    assert_int_equal(pc_backbone_out_size(bb, layer, h, w, &oh, &ow), PC_OK);
    const size_t count = (size_t)pc_backbone_channels(bb, layer) * (size_t)oh * (size_t)ow;
    const size_t in1 = 3 * (size_t)h * (size_t)w;
    pc_backbone *v[2] = {0};
    float *want[2], *got[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pc_backbone_view(bb, &v[i]), PC_OK);
        want[i] = calloc(count, sizeof(float)), got[i] = calloc(count, sizeof(float));
        assert_non_null(want[i]), assert_non_null(got[i]);
        float *outs[4] = {0};
        outs[layer - 1] = want[i];
        /* serial: image i alone, on the parent */
        assert_int_equal(pc_backbone_forward(bb, images + i * in1, 1, h, w, PC_LAYER(layer), outs), PC_OK);
    }
    assert_int_equal(pc_backbone_weight_bytes(v[0]), 0);
    pthread_t t[2];
    view_job j[2];
    for (int i = 0; i < 2; i++) {
        j[i] = (view_job){v[i], images + i * in1, h, w, layer, got[i], want[i], count, 0};
        assert_int_equal(pthread_create(&t[i], NULL, view_run, &j[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    print_message("%s: two views at once = serial: %s, %s\n", what, j[0].ok ? "yes" : "NO", j[1].ok ? "yes" : "NO");
    assert_true(j[0].ok && j[1].ok);
    for (int i = 0; i < 2; i++) {
        pc_backbone_free(v[i]);
        free(want[i]), free(got[i]);
    }
}
