/*
 * scoring.c - patch/image scores, Eq. 7 reweighting and anomaly maps (bilinear + scipy-exact Gaussian).
 *
 * The Gaussian follows scipy.ndimage's C code path for float32 input: each 1-D pass copies a line
 * (extended by 'reflect') into a double buffer, computes the symmetric correlation in double in scipy's
 * order, and writes float32; the second axis reads the rounded float32 result of the first.
 */
#include "scoring.h"

#include "patch_features.h" /* pc_bilinear_axis */

#include <math.h>
#include <string.h>

void pc_patch_scores(float *scores, const float *dists, int64_t m, int32_t k) {
    for (int64_t i = 0; i < m; i++) {
        float s = 0.f;
        for (int32_t t = 0; t < k; t++) s += dists[(size_t)i * k + t];
        scores[i] = k == 1 ? s : s / (float)k;
    }
}

float pc_image_score(const float *scores, int64_t m, int64_t *argmax) {
    int64_t bi = 0;
    for (int64_t i = 1; i < m; i++)
        if (scores[i] > scores[bi]) bi = i;
    if (argmax) *argmax = bi;
    return scores[bi];
}

static double dist_l2(const float *a, const float *b, int32_t dim) {
    double s = 0;
    for (int32_t c = 0; c < dim; c++) {
        double t = (double)a[c] - b[c];
        s += t * t;
    }
    return sqrt(s);
}

float pc_score_reweight(float s_star, const float *m_test, const float *m_star, const float *neighbours,
                        int32_t b, int32_t dim) {
    if (b <= 0) return s_star;
    double dstar = dist_l2(m_test, m_star, dim), mx = dstar;
    /* two passes over the b neighbours (b is small): the maximum, then the shifted sum */
    for (int32_t j = 0; j < b; j++) mx = fmax(mx, dist_l2(m_test, neighbours + (size_t)j * dim, dim));
    double den = 0;
    for (int32_t j = 0; j < b; j++) den += exp(dist_l2(m_test, neighbours + (size_t)j * dim, dim) - mx);
    double w = 1.0 - exp(dstar - mx) / den;
    return (float)(w * (double)s_star);
}

size_t pc_resize_workspace_size(int32_t out_h, int32_t out_w) {
    return (sizeof(int32_t) + sizeof(float)) * 2 * ((size_t)out_h + (size_t)out_w);
}

void pc_resize_bilinear_f32(float *out, int32_t out_h, int32_t out_w, const float *in, int32_t in_h, int32_t in_w,
                            void *workspace) {
    int32_t *yi0 = workspace, *yi1 = yi0 + out_h, *xi0 = yi1 + out_h, *xi1 = xi0 + out_w;
    float *yw0 = (float *)(xi1 + out_w), *yw1 = yw0 + out_h, *xw0 = yw1 + out_h, *xw1 = xw0 + out_w;
    pc_bilinear_axis(yi0, yi1, yw0, yw1, in_h, out_h);
    pc_bilinear_axis(xi0, xi1, xw0, xw1, in_w, out_w);
    for (int32_t y = 0; y < out_h; y++) {
        const float *r0 = in + (size_t)yi0[y] * in_w, *r1 = in + (size_t)yi1[y] * in_w;
        const float h0 = yw0[y], h1 = yw1[y];
        float *o = out + (size_t)y * out_w;
        for (int32_t x = 0; x < out_w; x++)
            o[x] = h0 * (xw0[x] * r0[xi0[x]] + xw1[x] * r0[xi1[x]]) + h1 * (xw0[x] * r1[xi0[x]] + xw1[x] * r1[xi1[x]]);
    }
}

int32_t pc_gaussian_radius(double sigma, double truncate) { return (int32_t)(truncate * sigma + 0.5); }

size_t pc_gaussian_workspace_size(int32_t h, int32_t w, double sigma, double truncate) {
    int32_t r = sigma > 0 ? pc_gaussian_radius(sigma, truncate) : 0;
    size_t line = (size_t)PC_MAX(h, w) + 2 * (size_t)r;
    return sizeof(double) * (line + 2 * (size_t)r + 1) + sizeof(float) * (size_t)h * w + 64;
}

/* numpy's pairwise summation for n <= 128 (8 accumulators, then the remainder in order), so that the
 * kernel's normaliser is the very double numpy computes in phi_x / phi_x.sum() */
static double numpy_sum(const double *a, int32_t n) {
    if (n < 8) {
        double s = -0.0;
        for (int32_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n > 128) { /* not reached for sane radii (<= 63); plain sum otherwise */
        double s = 0;
        for (int32_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    double r[8];
    for (int j = 0; j < 8; j++) r[j] = a[j];
    int32_t i;
    for (i = 8; i < n - (n % 8); i += 8)
        for (int j = 0; j < 8; j++) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[i];
    return res;
}

static inline int32_t reflect_index(int64_t i, int32_t len) {
    int64_t period = 2 * (int64_t)len;
    int64_t m = i % period;
    if (m < 0) m += period;
    return (int32_t)(m >= len ? period - 1 - m : m);
}

/* one 1-D pass over `lines` lines of length len (element stride `step`, line stride `lstride`) */
static void gauss_pass(float *out, const float *in, int32_t lines, int32_t len, size_t step, size_t lstride,
                       const double *fw /* centre of 2r+1 weights */, int32_t r, double *buf) {
    for (int32_t l = 0; l < lines; l++) {
        const float *src = in + (size_t)l * lstride;
        float *dst = out + (size_t)l * lstride;
        for (int64_t i = -r; i < (int64_t)len + r; i++) buf[i + r] = (double)src[(size_t)reflect_index(i, len) * step];
        const double *line = buf + r;
        for (int32_t i = 0; i < len; i++) {
            const double *c = line + i;
            double acc = c[0] * fw[0];
            for (int32_t j = -r; j < 0; j++) acc += (c[j] + c[-j]) * fw[j];
            dst[(size_t)i * step] = (float)acc;
        }
    }
}

void pc_gaussian_filter_f32(float *out, const float *in, int32_t h, int32_t w, double sigma, double truncate,
                            void *workspace) {
    if (!(sigma > 0)) {
        if (out != in) memmove(out, in, sizeof(float) * (size_t)h * w);
        return;
    }
    const int32_t r = pc_gaussian_radius(sigma, truncate);
    const size_t line = (size_t)PC_MAX(h, w) + 2 * (size_t)r;
    double *buf = workspace, *wts = buf + line;
    float *tmp = (float *)(wts + 2 * r + 1);
    const double k = -0.5 / (sigma * sigma);
    for (int32_t x = -r; x <= r; x++) wts[x + r] = exp(k * (double)((int64_t)x * x));
    const double sum = numpy_sum(wts, 2 * r + 1);
    for (int32_t i = 0; i < 2 * r + 1; i++) wts[i] /= sum;
    /* axis 0: along columns (each of the w lines has h elements, stride w) */
    gauss_pass(tmp, in, w, h, (size_t)w, 1, wts + r, r, buf);
    /* axis 1: along rows */
    gauss_pass(out, tmp, h, w, 1, (size_t)w, wts + r, r, buf);
}

size_t pc_anomaly_map_workspace_size(int32_t size, double sigma) {
    return sizeof(float) * (size_t)size * size + 64 + pc_resize_workspace_size(size, size) +
           pc_gaussian_workspace_size(size, size, sigma, 4.0);
}

void pc_anomaly_map(float *out, const float *patch_scores, int32_t grid_h, int32_t grid_w, int32_t size,
                    double sigma, void *workspace) {
    char *ws = workspace;
    size_t rs = (pc_resize_workspace_size(size, size) + 63) / 64 * 64;
    pc_resize_bilinear_f32(out, size, size, patch_scores, grid_h, grid_w, ws);
    pc_gaussian_filter_f32(out, out, size, size, sigma, 4.0, ws + rs);
}
