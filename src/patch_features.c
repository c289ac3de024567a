/*
 * patch_features.c - locally aware patch features (METHOD.md §3): a precomputed sparse pooling plan applied
 * on each layer's own grid, then bilinear alignment of the pooled maps; and the plain reference.
 *
 * Why this equals the definition: unfold, bilinear resize and both adaptive poolings are linear, the
 * resize acts on the spatial axes only and the poolings on the component axis only, so they commute.
 * Output j of the final pooling is therefore, for each layer l, a fixed weighted sum over unfolded
 * components q = c*p*p + ky*p + kx:  Z_l[j](y,x) = sum_q w_l[j][q] * act_l[c](y+ky-pad, x+kx-pad),
 * computed on layer l's own grid and then resized to the first layer's grid. The weights
 * w_l[j][q] = sum over pre-bins i of layer l inside final bin j of 1/|bin j| * 1/|pre-bin i| * [q in i]
 * are computed once in double. Only the D pooled maps are interpolated, never the C*p*p unfolded ones.
 */
#include "patch_features.h"

#include <math.h>
#include <string.h>

#define ZBLOCK 32 /* spatial floats accumulated in registers per (row, block) task */

typedef struct layer_plan {
    int32_t c, h, w;      /* activation shape */
    int32_t hp, wp;       /* zero-padded activation (h + 2 pad) x (w + 2 pad) */
    int32_t gh, gw;       /* unfold grid of this layer */
    size_t zlen;          /* floats per Z row: gh*wp rounded up to ZBLOCK */
    size_t pad_floats;    /* floats of the padded activation copy incl. slack */
    int32_t j0, j1;       /* output dims with a contribution from this layer */
    int64_t *row_ptr;     /* (j1-j0+1): terms of row r are row_ptr[r] .. row_ptr[r+1]-1 */
    int64_t *term_off;    /* offset of the term's first read in the padded activation */
    float *term_w;        /* weight of the term */
    int32_t *yi0, *yi1, *xi0, *xi1; /* bilinear tables to the first layer's grid (H, W) */
    float *yw0, *yw1, *xw0, *xw1;
    size_t ws_pad, ws_z;  /* offsets (floats) of this layer's buffers in the workspace */
} layer_plan;

struct pc_features_plan {
    int32_t n_layers, patch, pad, pre_dim, dim;
    int32_t grid_h, grid_w;
    layer_plan layer[PC_FEATURES_MAX_LAYERS];
    size_t ws_floats;
};

void pc_bilinear_axis(int32_t *i0, int32_t *i1, float *w0, float *w1, int32_t in_size, int32_t out_size) {
    /* PyTorch's area_pixel_compute_scale / area_pixel_compute_source_index in float (UpSampleKernel.cpp). */
    float scale = (float)in_size / (float)out_size;
    for (int32_t o = 0; o < out_size; o++) {
        float src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0.f) src = 0.f;
        int32_t a = (int32_t)src;
        if (a > in_size - 1) a = in_size - 1;
        int32_t b = a + (a < in_size - 1 ? 1 : 0);
        float l1 = src - (float)a;
        if (l1 < 0.f) l1 = 0.f;
        if (l1 > 1.f) l1 = 1.f;
        i0[o] = a;
        i1[o] = b;
        w0[o] = 1.f - l1;
        w1[o] = l1;
    }
}

void pc_features_plan_free(pc_features_plan *plan) {
    if (!plan) return;
    for (int l = 0; l < plan->n_layers; l++) {
        layer_plan *lp = &plan->layer[l];
        pc_free(lp->row_ptr);
        pc_free(lp->term_off);
        pc_free(lp->term_w);
        pc_free(lp->yi0);
        pc_free(lp->yw0);
    }
    pc_free(plan);
}

void pc_features_plan_grid(const pc_features_plan *plan, int32_t *grid_h, int32_t *grid_w, int32_t *dim) {
    if (grid_h) *grid_h = plan->grid_h;
    if (grid_w) *grid_w = plan->grid_w;
    if (dim) *dim = plan->dim;
}

size_t pc_features_workspace_size(const pc_features_plan *plan) { return plan->ws_floats * sizeof(float); }

/* Build layer l's sparse rows. Final bin j covers concatenated entries g in [gs, ge); those with
 * g / D_pre == l are pre-bins i = g % D_pre of this layer, each covering components [qs, qe). */
static pc_status build_rows(layer_plan *lp, int32_t l, const pc_features_plan *p, int64_t len_l) {
    const int64_t G = (int64_t)p->n_layers * p->pre_dim, D = p->dim, P = p->pre_dim;
    const int32_t pp = p->patch * p->patch;
    lp->j0 = -1;
    lp->j1 = -1;
    int64_t bound = 0; /* upper bound on the number of terms */
    for (int64_t j = 0; j < D; j++) {
        int64_t gs, ge;
        pc_adaptive_bin(j, D, G, &gs, &ge);
        bool hit = false;
        for (int64_t g = gs; g < ge; g++) {
            if (g / P != l) continue;
            int64_t qs, qe;
            pc_adaptive_bin(g % P, P, len_l, &qs, &qe);
            bound += qe - qs;
            hit = true;
        }
        if (hit) {
            if (lp->j0 < 0) lp->j0 = (int32_t)j;
            lp->j1 = (int32_t)j + 1;
        }
    }
    if (lp->j0 < 0) { /* cannot happen (every entry lies in some bin), but keep the plan consistent */
        lp->j0 = lp->j1 = 0;
    }
    int32_t rows = lp->j1 - lp->j0;
    lp->row_ptr = pc_malloc(sizeof(int64_t) * (size_t)(rows + 1));
    lp->term_off = pc_malloc(sizeof(int64_t) * (size_t)(bound ? bound : 1));
    lp->term_w = pc_malloc(sizeof(float) * (size_t)(bound ? bound : 1));
    double *acc = pc_calloc((size_t)len_l, sizeof(double));
    if (!lp->row_ptr || !lp->term_off || !lp->term_w || !acc) {
        pc_free(acc);
        return pc_fail(PC_ERR_NO_MEMORY, "features plan: out of memory");
    }
    int64_t nt = 0;
    for (int32_t r = 0; r < rows; r++) {
        int64_t j = lp->j0 + r, gs, ge;
        pc_adaptive_bin(j, D, G, &gs, &ge);
        double wj = 1.0 / (double)(ge - gs);
        int64_t lo = len_l, hi = 0;
        for (int64_t g = gs; g < ge; g++) {
            if (g / P != l) continue;
            int64_t qs, qe;
            pc_adaptive_bin(g % P, P, len_l, &qs, &qe);
            double wi = wj / (double)(qe - qs);
            for (int64_t q = qs; q < qe; q++) acc[q] += wi;
            lo = PC_MIN(lo, qs);
            hi = PC_MAX(hi, qe);
        }
        lp->row_ptr[r] = nt;
        for (int64_t q = lo; q < hi; q++) {
            if (acc[q] == 0.0) continue;
            int64_t c = q / pp, ky = (q % pp) / p->patch, kx = q % p->patch;
            lp->term_off[nt] = c * (int64_t)lp->hp * lp->wp + ky * lp->wp + kx;
            lp->term_w[nt] = (float)acc[q];
            acc[q] = 0.0;
            nt++;
        }
    }
    lp->row_ptr[rows] = nt;
    pc_free(acc);
    return PC_OK;
}

pc_status pc_features_plan_create(pc_features_plan **out, const pc_layer_shape *layers, int32_t n_layers,
                                  int32_t patch, int32_t pre_dim, int32_t dim) {
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "features plan: NULL output");
    *out = NULL;
    if (!layers || n_layers < 1 || n_layers > PC_FEATURES_MAX_LAYERS)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "features plan: %d layers (1..%d supported)", n_layers,
                       PC_FEATURES_MAX_LAYERS);
    if (patch < 1 || patch > 15 || pre_dim < 1 || dim < 1 || pre_dim > (1 << 20) || dim > (1 << 20))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "features plan: patch %d, pre_dim %d, dim %d out of range",
                       patch, pre_dim, dim);
    pc_features_plan *p = pc_calloc(1, sizeof *p);
    if (!p) return pc_fail(PC_ERR_NO_MEMORY, "features plan: out of memory");
    p->n_layers = n_layers;
    p->patch = patch;
    p->pad = (patch - 1) / 2;
    p->pre_dim = pre_dim;
    p->dim = dim;
    size_t ws = 0;
    pc_status st = PC_OK;
    for (int32_t l = 0; l < n_layers && st == PC_OK; l++) {
        layer_plan *lp = &p->layer[l];
        const pc_layer_shape *s = &layers[l];
        if (s->channels < 1 || s->height < 1 || s->width < 1 || s->channels > (1 << 20) ||
            s->height > (1 << 15) || s->width > (1 << 15)) {
            st = pc_fail(PC_ERR_INVALID_ARGUMENT, "features plan: layer %d shape %dx%dx%d out of range", l,
                         s->channels, s->height, s->width);
            break;
        }
        lp->c = s->channels;
        lp->h = s->height;
        lp->w = s->width;
        lp->hp = lp->h + 2 * p->pad;
        lp->wp = lp->w + 2 * p->pad;
        lp->gh = lp->hp - patch + 1;
        lp->gw = lp->wp - patch + 1;
        if (lp->gh < 1 || lp->gw < 1) {
            st = pc_fail(PC_ERR_SHAPE, "features plan: layer %d (%dx%d) is smaller than the patch %d", l, lp->h,
                         lp->w, patch);
            break;
        }
        if (l == 0) {
            p->grid_h = lp->gh;
            p->grid_w = lp->gw;
        }
        size_t zl = (size_t)lp->gh * (size_t)lp->wp;
        lp->zlen = (zl + ZBLOCK - 1) / ZBLOCK * ZBLOCK;
        size_t padf;
        if (!pc_mul3_size((size_t)lp->c, (size_t)lp->hp, (size_t)lp->wp, &padf)) {
            st = pc_fail(PC_ERR_TOO_LARGE, "features plan: layer %d too large", l);
            break;
        }
        /* Z rows read up to zlen floats from each term's offset: slack past the last channel. */
        lp->pad_floats = (padf + (lp->zlen - zl) + (size_t)patch + 64 + 15) / 16 * 16;
        int64_t len_l = (int64_t)lp->c * patch * patch;
        st = build_rows(lp, l, p, len_l);
        if (st != PC_OK) break;
        size_t zf = (size_t)(lp->j1 - lp->j0) * lp->zlen;
        lp->ws_pad = ws;
        ws += lp->pad_floats;
        lp->ws_z = ws;
        ws += (zf + 15) / 16 * 16;
        /* bilinear tables from this layer's grid to the first layer's grid */
        lp->yi0 = pc_malloc(sizeof(int32_t) * 2 * (size_t)(p->grid_h + p->grid_w) * 2);
        lp->yw0 = pc_malloc(sizeof(float) * 2 * (size_t)(p->grid_h + p->grid_w) * 2);
        if (!lp->yi0 || !lp->yw0) {
            st = pc_fail(PC_ERR_NO_MEMORY, "features plan: out of memory");
            break;
        }
        lp->yi1 = lp->yi0 + p->grid_h;
        lp->xi0 = lp->yi1 + p->grid_h;
        lp->xi1 = lp->xi0 + p->grid_w;
        lp->yw1 = lp->yw0 + p->grid_h;
        lp->xw0 = lp->yw1 + p->grid_h;
        lp->xw1 = lp->xw0 + p->grid_w;
        pc_bilinear_axis(lp->yi0, lp->yi1, lp->yw0, lp->yw1, lp->gh, p->grid_h);
        pc_bilinear_axis(lp->xi0, lp->xi1, lp->xw0, lp->xw1, lp->gw, p->grid_w);
    }
    if (st != PC_OK) {
        pc_features_plan_free(p);
        return st;
    }
    p->ws_floats = ws;
    *out = p;
    return PC_OK;
}

/* Z row r, spatial block b: acc = sum over the row's terms of w * actpad[off + b .. b+ZBLOCK). The
 * accumulator stays in registers (4 AVX2 vectors); each term is one broadcast and 4 FMAs. */
static void z_block(float *z, const float *actpad, const int64_t *off, const float *w, int64_t nt) {
    float acc[ZBLOCK];
    for (int i = 0; i < ZBLOCK; i++) acc[i] = 0.f;
    for (int64_t t = 0; t < nt; t++) {
        const float *src = actpad + off[t];
        const float wt = w[t];
        for (int i = 0; i < ZBLOCK; i++) acc[i] += wt * src[i];
    }
    for (int i = 0; i < ZBLOCK; i++) z[i] = acc[i];
}

void pc_features_compute(float *out, const float *const *acts, const pc_features_plan *plan, void *workspace) {
    float *ws = workspace;
    const int32_t H = plan->grid_h, W = plan->grid_w, D = plan->dim, pad = plan->pad;
    for (int32_t l = 0; l < plan->n_layers; l++) {
        const layer_plan *lp = &plan->layer[l];
        float *actpad = ws + lp->ws_pad, *z = ws + lp->ws_z;
        const float *act = acts[l];
        /* zero-padded copy: (c, hp, wp) plus zeroed slack */
        const size_t chan = (size_t)lp->hp * lp->wp;
#pragma omp parallel for schedule(static)
        for (int32_t c = 0; c < lp->c; c++) {
            float *dst = actpad + (size_t)c * chan;
            const float *src = act + (size_t)c * lp->h * lp->w;
            memset(dst, 0, sizeof(float) * (size_t)pad * lp->wp);
            for (int32_t y = 0; y < lp->h; y++) {
                float *row = dst + (size_t)(y + pad) * lp->wp;
                for (int32_t x = 0; x < pad; x++) row[x] = 0.f, row[lp->wp - 1 - x] = 0.f;
                memcpy(row + pad, src + (size_t)y * lp->w, sizeof(float) * (size_t)lp->w);
            }
            memset(dst + (size_t)(lp->h + pad) * lp->wp, 0, sizeof(float) * (size_t)(lp->hp - lp->h - pad) * lp->wp);
        }
        memset(actpad + (size_t)lp->c * chan, 0, sizeof(float) * (lp->pad_floats - (size_t)lp->c * chan));
        /* pooled maps on the layer's own grid (padded width; columns >= gw are never read back) */
        const int64_t rows = lp->j1 - lp->j0, nb = (int64_t)(lp->zlen / ZBLOCK);
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t task = 0; task < rows * nb; task++) {
            int64_t r = task / nb, b = task % nb;
            int64_t t0 = lp->row_ptr[r], t1 = lp->row_ptr[r + 1];
            z_block(z + r * lp->zlen + b * ZBLOCK, actpad + b * ZBLOCK, lp->term_off + t0, lp->term_w + t0, t1 - t0);
        }
    }
    /* assemble: out[pos][j] = sum over layers of the (resized) pooled maps */
#pragma omp parallel for schedule(static)
    for (int32_t pos = 0; pos < H * W; pos++) {
        const int32_t y = pos / W, x = pos % W;
        float *o = out + (size_t)pos * D;
        memset(o, 0, sizeof(float) * (size_t)D);
        for (int32_t l = 0; l < plan->n_layers; l++) {
            const layer_plan *lp = &plan->layer[l];
            const float *z = ws + lp->ws_z;
            const int32_t rows = lp->j1 - lp->j0;
            float *ol = o + lp->j0;
            if (lp->gh == H && lp->gw == W) { /* same grid: bilinear is the identity */
                const float *zp = z + (size_t)y * lp->wp + x;
                for (int32_t r = 0; r < rows; r++) ol[r] += zp[(size_t)r * lp->zlen];
            } else {
                const size_t a = (size_t)lp->yi0[y] * lp->wp, b = (size_t)lp->yi1[y] * lp->wp;
                const int32_t c0 = lp->xi0[x], c1 = lp->xi1[x];
                const float h0 = lp->yw0[y], h1 = lp->yw1[y], w0 = lp->xw0[x], w1 = lp->xw1[x];
                for (int32_t r = 0; r < rows; r++) {
                    const float *zr = z + (size_t)r * lp->zlen;
                    ol[r] += h0 * (w0 * zr[a + c0] + w1 * zr[a + c1]) + h1 * (w0 * zr[b + c0] + w1 * zr[b + c1]);
                }
            }
        }
    }
}

/* ---- plain reference: the definition, step by step, with materialised intermediate tensors ---- */

static void adaptive_pool(float *out, const float *in, int64_t len, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t s, e;
        pc_adaptive_bin(i, n, len, &s, &e);
        float sum = 0.f;
        for (int64_t q = s; q < e; q++) sum += in[q];
        out[i] = sum / (float)(e - s);
    }
}

pc_status pc_features_reference(float *out, const float *const *acts, const pc_layer_shape *layers,
                                int32_t n_layers, int32_t patch, int32_t pre_dim, int32_t dim) {
    if (n_layers < 1 || n_layers > PC_FEATURES_MAX_LAYERS || patch < 1 || pre_dim < 1 || dim < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "features reference: bad arguments");
    const int32_t pad = (patch - 1) / 2, pp = patch * patch;
    const int32_t H = layers[0].height + 2 * pad - patch + 1, W = layers[0].width + 2 * pad - patch + 1;
    if (H < 1 || W < 1) return pc_fail(PC_ERR_SHAPE, "features reference: layer smaller than patch");
    const size_t npos = (size_t)H * W;
    float *concat = pc_malloc(sizeof(float) * npos * (size_t)n_layers * pre_dim);
    if (!concat) return pc_fail(PC_ERR_NO_MEMORY, "features reference: out of memory");
    pc_status st = PC_OK;
    for (int32_t l = 0; l < n_layers; l++) {
        const int32_t C = layers[l].channels, h = layers[l].height, w = layers[l].width;
        const int32_t gh = h + 2 * pad - patch + 1, gw = w + 2 * pad - patch + 1;
        const int64_t L = (int64_t)C * pp;
        /* 1. unfold: (L, gh, gw) */
        float *unf = pc_malloc(sizeof(float) * (size_t)L * gh * gw);
        /* 2. resize every component map to (H, W): (L, H, W) */
        float *res = pc_malloc(sizeof(float) * (size_t)L * npos);
        float *vec = pc_malloc(sizeof(float) * (size_t)L);
        int32_t *tab = pc_malloc(sizeof(int32_t) * 2 * (size_t)(H + W));
        float *tw = pc_malloc(sizeof(float) * 2 * (size_t)(H + W));
        if (!unf || !res || !vec || !tab || !tw) {
            st = pc_fail(PC_ERR_NO_MEMORY, "features reference: out of memory");
        } else {
            const float *a = acts[l];
            for (int64_t q = 0; q < L; q++) {
                int32_t c = (int32_t)(q / pp), ky = (int32_t)(q % pp) / patch, kx = (int32_t)(q % patch);
                for (int32_t y = 0; y < gh; y++)
                    for (int32_t x = 0; x < gw; x++) {
                        int32_t sy = y + ky - pad, sx = x + kx - pad;
                        unf[((size_t)q * gh + y) * gw + x] =
                            (sy >= 0 && sy < h && sx >= 0 && sx < w) ? a[((size_t)c * h + sy) * w + sx] : 0.f;
                    }
            }
            int32_t *yi0 = tab, *yi1 = tab + H, *xi0 = tab + 2 * H, *xi1 = tab + 2 * H + W;
            float *yw0 = tw, *yw1 = tw + H, *xw0 = tw + 2 * H, *xw1 = tw + 2 * H + W;
            pc_bilinear_axis(yi0, yi1, yw0, yw1, gh, H);
            pc_bilinear_axis(xi0, xi1, xw0, xw1, gw, W);
            for (int64_t q = 0; q < L; q++) {
                const float *u = unf + (size_t)q * gh * gw;
                for (int32_t y = 0; y < H; y++)
                    for (int32_t x = 0; x < W; x++)
                        res[(size_t)q * npos + (size_t)y * W + x] =
                            yw0[y] * (xw0[x] * u[yi0[y] * gw + xi0[x]] + xw1[x] * u[yi0[y] * gw + xi1[x]]) +
                            yw1[y] * (xw0[x] * u[yi1[y] * gw + xi0[x]] + xw1[x] * u[yi1[y] * gw + xi1[x]]);
            }
            /* 3. per position, pool the L components to D_pre into its slot of the concatenation */
            for (size_t pos = 0; pos < npos; pos++) {
                for (int64_t q = 0; q < L; q++) vec[q] = res[(size_t)q * npos + pos];
                adaptive_pool(concat + pos * (size_t)n_layers * pre_dim + (size_t)l * pre_dim, vec, L, pre_dim);
            }
        }
        pc_free(unf);
        pc_free(res);
        pc_free(vec);
        pc_free(tab);
        pc_free(tw);
        if (st != PC_OK) break;
    }
    /* 4. pool the concatenation to D */
    if (st == PC_OK)
        for (size_t pos = 0; pos < npos; pos++)
            adaptive_pool(out + pos * (size_t)dim, concat + pos * (size_t)n_layers * pre_dim,
                          (int64_t)n_layers * pre_dim, dim);
    pc_free(concat);
    return st;
}
