/*
 * ensemble.c - how an ensemble's members combine (docs/ensemble.md). Members are whole single models
 * (model.c); here: their normalisation statistics from leave-one-out predictions of training images,
 * the combined prediction (one member after the other on the same decoded image, preprocessed once
 * per resolution), and the reference implementation's test-set min-max rule for evaluation.
 */
#include "ensemble.h"
#include "knn.h"
#include "model_internal.h"
#include "scoring.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define GAUSSIAN_SIGMA 4.0

/* One prediction's scratch: a preprocessed input per preprocessing group leader, a member's map, the
 * map resized to the first member's crop, the resize workspace; one block. */
typedef struct ectx {
    struct ectx *next;
    void *block;
    float **inputs; /* n entries; non-NULL for a member whose preprocessing a later member reuses */
    float *mmap, *rmap;
    void *rws;
} ectx;

struct pc_ensemble {
    pc_model **members;
    int32_t n;
    double (*z)[4];
    int32_t *leader;    /* the first member with the same resize and crop (itself when none before) */
    int32_t *shared;    /* 1 when a later member reuses this member's preprocessing */
    int32_t *crop, s0, max_crop;
    pthread_mutex_t lock;
    ectx *free_ctx;
};

static void ectx_free(ectx *c) {
    if (!c) return;
    pc_free(c->block);
    pc_free(c->inputs);
    pc_free(c);
}

void pc_ensemble_free(pc_ensemble *e) {
    if (!e) return;
    for (ectx *c = e->free_ctx; c;) {
        ectx *nx = c->next;
        ectx_free(c);
        c = nx;
    }
    pthread_mutex_destroy(&e->lock);
    pc_free(e->z);
    pc_free(e->leader);
    pc_free(e->shared);
    pc_free(e->crop);
    pc_free(e);
}

pc_status pc_ensemble_create(pc_ensemble **out, pc_model **members, int32_t n, const double (*stats)[4]) {
    *out = NULL;
    if (n < 2 || n > PC_ENSEMBLE_MAX_MEMBERS)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "ensemble: 2..%d members, not %d", PC_ENSEMBLE_MAX_MEMBERS, (int)n);
    pc_ensemble *e = pc_calloc(1, sizeof *e);
    if (!e) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    pthread_mutex_init(&e->lock, NULL);
    e->members = members;
    e->n = n;
    e->z = pc_malloc((size_t)n * sizeof *e->z);
    e->leader = pc_calloc((size_t)n, sizeof *e->leader);
    e->shared = pc_calloc((size_t)n, sizeof *e->shared);
    e->crop = pc_calloc((size_t)n, sizeof *e->crop);
    if (!e->z || !e->leader || !e->shared || !e->crop) {
        pc_ensemble_free(e);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    int32_t resize[PC_ENSEMBLE_MAX_MEMBERS];
    for (int32_t i = 0; i < n; i++) {
        pc_model_info info;
        pc_status st = pc_model_get_info(members[i], &info);
        if (st) {
            pc_ensemble_free(e);
            return st;
        }
        memcpy(e->z[i], stats[i], sizeof e->z[i]);
        e->crop[i] = info.crop, resize[i] = info.resize;
        e->max_crop = PC_MAX(e->max_crop, info.crop);
        e->leader[i] = i;
        for (int32_t j = 0; j < i; j++)
            if (resize[j] == resize[i] && e->crop[j] == e->crop[i]) {
                e->leader[i] = j;
                e->shared[j] = 1;
                break;
            }
    }
    e->s0 = e->crop[0];
    *out = e;
    return PC_OK;
}

void pc_ensemble_member_stats(const pc_ensemble *e, int32_t i, double stats[4]) {
    for (int j = 0; j < 4; j++) stats[j] = e && i >= 0 && i < e->n ? e->z[i][j] : NAN;
}

static pc_status ectx_create(pc_ensemble *e, ectx **out) {
    ectx *c = pc_calloc(1, sizeof *c);
    if (c) c->inputs = pc_calloc((size_t)e->n, sizeof *c->inputs);
    if (!c || !c->inputs) {
        ectx_free(c);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    size_t sizes[PC_ENSEMBLE_MAX_MEMBERS + 3], offs[PC_ENSEMBLE_MAX_MEMBERS + 3], total = 0, k = 0;
    for (int32_t i = 0; i < e->n; i++) sizes[k++] = e->shared[i] ? 3 * (size_t)e->crop[i] * e->crop[i] * sizeof(float) : 0;
    sizes[k++] = (size_t)e->max_crop * e->max_crop * sizeof(float);
    sizes[k++] = (size_t)e->s0 * e->s0 * sizeof(float);
    sizes[k++] = pc_resize_workspace_size(e->s0, e->s0);
    for (size_t i = 0; i < k; i++) {
        offs[i] = total;
        total += (sizes[i] + 63) & ~(size_t)63;
    }
    c->block = pc_malloc(total);
    if (!c->block) {
        ectx_free(c);
        return pc_fail(PC_ERR_NO_MEMORY, "cannot allocate %.1f MB of ensemble workspace", (double)total / 1e6);
    }
    uint8_t *b = c->block;
    for (int32_t i = 0; i < e->n; i++) c->inputs[i] = sizes[i] ? (float *)(b + offs[i]) : NULL;
    c->mmap = (float *)(b + offs[e->n]);
    c->rmap = (float *)(b + offs[e->n + 1]);
    c->rws = b + offs[e->n + 2];
    *out = c;
    return PC_OK;
}

pc_status pc_ensemble_predict(pc_ensemble *e, const pc_image *rgb, float *score, float *map, pc_geometry *geometry) {
    pthread_mutex_lock(&e->lock);
    ectx *c = e->free_ctx;
    if (c) e->free_ctx = c->next;
    pthread_mutex_unlock(&e->lock);
    pc_status st = c ? PC_OK : ectx_create(e, &c);
    if (st) return st;
    const size_t np0 = (size_t)e->s0 * e->s0;
    if (map) memset(map, 0, np0 * sizeof *map);
    double acc = 0;
    for (int32_t i = 0; i < e->n && !st; i++) {
        const int32_t l = e->leader[i];
        const float *input = l != i ? c->inputs[l] : NULL;
        float s = 0;
        st = pc_model_predict_raw(e->members[i], rgb, input, l == i ? c->inputs[i] : NULL, &s, map ? c->mmap : NULL,
                                  i == 0 ? geometry : NULL);
        if (st) {
            pc_fail_context(st, "ensemble member %d", (int)i + 1);
            break;
        }
        acc += ((double)s - e->z[i][0]) / e->z[i][1];
        if (!map) continue;
        const float *src = c->mmap;
        if (e->crop[i] != e->s0) {
            pc_resize_bilinear_f32(c->rmap, e->s0, e->s0, c->mmap, e->crop[i], e->crop[i], c->rws);
            src = c->rmap;
        }
        const double mu = e->z[i][2], inv = 1.0 / e->z[i][3];
        for (size_t p = 0; p < np0; p++) map[p] += (float)(((double)src[p] - mu) * inv);
    }
    if (!st) {
        *score = (float)(acc / e->n);
        if (map) {
            const float inv = 1.0f / (float)e->n;
            for (size_t p = 0; p < np0; p++) map[p] *= inv;
        }
    }
    pthread_mutex_lock(&e->lock);
    c->next = e->free_ctx;
    e->free_ctx = c;
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* ----------------------------------------------------------------------------------------------
 * Fit-time statistics: leave-one-out predictions
 * -------------------------------------------------------------------------------------------- */

/* One member's buffers for the leave-one-out predictions. */
typedef struct loo {
    pc_model *m;
    pc_model_info info;
    const float *bank;
    const int64_t *sel, *usable;
    int64_t bank_n, hw;
    int32_t dim, n_usable;
    float *rbank, *rnorms, *feats, *dist, *pscores, *lmap;
    int64_t *idx;
    void *kws, *mws;
    size_t kws_size;
    double *img;                 /* the picked images' scores */
    double pmean, pm2, pcount;   /* pixel statistics, combined image by image (Chan et al.) */
} loo;

static void loo_free(loo *L) {
    pc_free(L->rbank), pc_free(L->rnorms), pc_free(L->feats), pc_free(L->dist), pc_free(L->pscores);
    pc_free(L->lmap), pc_free(L->idx), pc_free(L->kws), pc_free(L->mws), pc_free(L->img);
}

static pc_status loo_init(loo *L, pc_model *m, int32_t i, int32_t n_pick) {
    memset(L, 0, sizeof *L);
    L->m = m;
    pc_status st = pc_model_get_info(m, &L->info);
    if (st) return st;
    int64_t nsel = 0;
    L->bank = pc_model_bank(m, &L->bank_n, &L->dim);
    L->sel = pc_model_coreset_indices(m, &nsel);
    L->usable = pc_model_usable_sources(m, &L->n_usable);
    if (!L->sel || nsel != L->bank_n || !L->usable)
        return pc_fail(PC_ERR_INTERNAL, "ensemble: member %d lacks its coreset indices", (int)i + 1);
    L->hw = (int64_t)L->info.grid_h * L->info.grid_w;
    const size_t D = (size_t)L->dim, hw = (size_t)L->hw, k = (size_t)L->info.k, S = (size_t)L->info.crop;
    L->kws_size = pc_knn_workspace_size(L->hw);
    L->rbank = pc_malloc((size_t)L->bank_n * D * sizeof(float));
    L->rnorms = pc_malloc((size_t)L->bank_n * sizeof(float));
    L->feats = pc_malloc(hw * D * sizeof(float));
    L->dist = pc_malloc(hw * k * sizeof(float));
    L->idx = pc_malloc(hw * k * sizeof(int64_t));
    L->pscores = pc_malloc(hw * sizeof(float));
    L->lmap = pc_malloc(S * S * sizeof(float));
    L->kws = pc_malloc(L->kws_size);
    L->mws = pc_malloc(pc_anomaly_map_workspace_size((int32_t)S, GAUSSIAN_SIGMA));
    L->img = pc_malloc((size_t)n_pick * sizeof(double));
    if (!L->rbank || !L->rnorms || !L->feats || !L->dist || !L->idx || !L->pscores || !L->lmap || !L->kws ||
        !L->mws || !L->img)
        return pc_fail(PC_ERR_NO_MEMORY, "ensemble: out of memory for member %d's normalisation (%.1f MB bank)",
                       (int)i + 1, (double)L->bank_n * (double)D * 4 / 1e6);
    return PC_OK;
}

/* Member L's leave-one-out prediction of usable training image u (decoded as img): its patches
 * against the bank without the entries that came from u; the score goes to L->img[j], the map's
 * pixels into the running pixel statistics. */
static pc_status loo_one(loo *L, const pc_image *img, int32_t u, int32_t j) {
    pc_status st = pc_model_patch_outputs(L->m, img, L->feats, NULL);
    if (st) return st;
    const size_t D = (size_t)L->dim;
    int64_t rn = 0;
    for (int64_t b = 0; b < L->bank_n; b++) {
        if (L->sel[b] / L->hw == u) continue;
        memcpy(L->rbank + (size_t)rn * D, L->bank + (size_t)b * D, D * sizeof(float));
        rn++;
    }
    if (rn < L->info.k)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "ensemble: a bank of %lld entries leaves %lld without one training "
                       "image's, fewer than k = %d; use a larger coreset", (long long)L->bank_n, (long long)rn,
                       (int)L->info.k);
    pc_knn_norms(L->rnorms, L->rbank, rn, L->dim);
    st = pc_knn_search(L->dist, L->idx, L->feats, L->hw, L->rbank, L->rnorms, rn, L->dim, L->info.k, L->kws,
                       L->kws_size);
    if (st) return st;
    pc_patch_scores(L->pscores, L->dist, L->hw, L->info.k);
    int64_t arg;
    L->img[j] = pc_image_score(L->pscores, L->hw, &arg);
    const int32_t S = L->info.crop;
    pc_anomaly_map(L->lmap, L->pscores, L->info.grid_h, L->info.grid_w, S, GAUSSIAN_SIGMA, L->mws);
    /* this map's mean and sum of squared deviations (two passes), merged into the running ones */
    const size_t np = (size_t)S * S;
    double sum = 0, m2 = 0;
    for (size_t p = 0; p < np; p++) sum += L->lmap[p];
    const double mean = sum / (double)np;
    for (size_t p = 0; p < np; p++) m2 += ((double)L->lmap[p] - mean) * ((double)L->lmap[p] - mean);
    const double n0 = L->pcount, n1 = (double)np, delta = mean - L->pmean;
    L->pmean += delta * n1 / (n0 + n1);
    L->pm2 += m2 + delta * delta * n0 * n1 / (n0 + n1);
    L->pcount = n0 + n1;
    return PC_OK;
}

pc_status pc_ensemble_fit_stats(pc_ensemble **out, pc_model **members, int32_t n, const char *const *paths,
                                pc_progress_fn progress, void *progress_user) {
    *out = NULL;
    if (!paths) return pc_fail(PC_ERR_INVALID_ARGUMENT, "ensemble: the training images' paths are needed");
    loo L[PC_ENSEMBLE_MAX_MEMBERS];
    memset(L, 0, sizeof L);
    /* the images every member could use (members decode the same files; a size a member cannot
     * preprocess would differ) */
    int32_t nu = 0;
    const int64_t *usable0 = pc_model_usable_sources(members[0], &nu);
    for (int32_t i = 1; i < n; i++) {
        int32_t ni = 0;
        const int64_t *ui = pc_model_usable_sources(members[i], &ni);
        if (ni != nu || !ui || !usable0 || memcmp(ui, usable0, (size_t)nu * sizeof *ui) != 0)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "ensemble: member %d could use other training images than member 1",
                           (int)i + 1);
    }
    if (nu < 2)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "ensemble: its normalisation needs at least 2 usable training images "
                       "(each is scored against the others' patches), not %d", (int)nu);
    const int32_t n_pick = PC_MIN(nu, PC_ENSEMBLE_NORM_IMAGES);
    pc_status st = PC_OK;
    for (int32_t i = 0; i < n && !st; i++) st = loo_init(&L[i], members[i], i, n_pick);
    for (int32_t j = 0; j < n_pick && !st; j++) {
        const int32_t u = (int32_t)((int64_t)j * nu / n_pick);
        const char *path = paths[usable0[u]];
        pc_image img = {0};
        st = pc_image_load(path, &img); /* decoded once for every member */
        for (int32_t i = 0; i < n && !st; i++) st = loo_one(&L[i], &img, u, j);
        pc_image_free(&img);
        if (st) pc_fail_context(st, "ensemble normalisation, %s", path);
        else if (progress && progress(progress_user, "normalise", j + 1, n_pick))
            st = pc_fail(PC_ERR_CANCELLED, "fit: cancelled");
    }
    double (*z)[4] = st ? NULL : pc_calloc((size_t)n, sizeof *z);
    if (!st && !z) st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    for (int32_t i = 0; i < n && !st; i++) {
        double sum = 0, ss = 0;
        for (int32_t j = 0; j < n_pick; j++) sum += L[i].img[j];
        const double mean = sum / n_pick;
        for (int32_t j = 0; j < n_pick; j++) ss += (L[i].img[j] - mean) * (L[i].img[j] - mean);
        const double sd = sqrt(ss / n_pick), psd = sqrt(L[i].pm2 / L[i].pcount);
        /* a spread of exactly zero (identical images) leaves the unit scale */
        z[i][0] = mean, z[i][1] = sd > 0 ? sd : 1.0, z[i][2] = L[i].pmean, z[i][3] = psd > 0 ? psd : 1.0;
    }
    for (int32_t i = 0; i < n; i++) loo_free(&L[i]);
    if (!st) st = pc_ensemble_create(out, members, n, (const double(*)[4])z);
    pc_free(z);
    return st;
}

/* ----------------------------------------------------------------------------------------------
 * The reference's test-set min-max rule
 * -------------------------------------------------------------------------------------------- */

size_t pc_minmax_workspace_size(int32_t s0, int32_t s) {
    const size_t a = ((size_t)s * s * sizeof(float) + 63) & ~(size_t)63;
    const size_t b = ((size_t)s0 * s0 * sizeof(float) + 63) & ~(size_t)63;
    return a + b + pc_resize_workspace_size(s0, s0);
}

void pc_minmax_accumulate(float *acc_scores, float *acc_maps, int64_t n, int32_t s0, const float *scores,
                          const float *maps, int32_t s, void *ws) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) lo = PC_MIN(lo, scores[i]), hi = PC_MAX(hi, scores[i]);
    const float range = hi - lo;
    for (int64_t i = 0; i < n; i++) acc_scores[i] += (scores[i] - lo) / range;
    if (!acc_maps || !maps) return;
    const size_t np = (size_t)s * s, np0 = (size_t)s0 * s0;
    lo = INFINITY, hi = -INFINITY;
    for (size_t p = 0; p < (size_t)n * np; p++) lo = PC_MIN(lo, maps[p]), hi = PC_MAX(hi, maps[p]);
    const float prange = hi - lo;
    float *norm = ws;
    float *res = (float *)((uint8_t *)ws + ((np * sizeof(float) + 63) & ~(size_t)63));
    void *rws = (uint8_t *)res + ((np0 * sizeof(float) + 63) & ~(size_t)63);
    for (int64_t i = 0; i < n; i++) {
        const float *m = maps + (size_t)i * np;
        float *acc = acc_maps + (size_t)i * np0;
        if (s == s0) {
            for (size_t p = 0; p < np; p++) acc[p] += (m[p] - lo) / prange;
            continue;
        }
        for (size_t p = 0; p < np; p++) norm[p] = (m[p] - lo) / prange;
        pc_resize_bilinear_f32(res, s0, s0, norm, s, s, rws);
        for (size_t p = 0; p < np0; p++) acc[p] += res[p];
    }
}

void pc_minmax_finish(float *acc_scores, float *acc_maps, int64_t n, int32_t s0, int32_t n_members) {
    const float d = (float)n_members;
    for (int64_t i = 0; i < n; i++) acc_scores[i] /= d;
    if (acc_maps)
        for (size_t p = 0; p < (size_t)n * s0 * s0; p++) acc_maps[p] /= d;
}

const char *pc_ensemble_norm_name(pc_ensemble_norm norm) {
    switch (norm) {
    case PC_ENSEMBLE_TRAIN_ZSCORE: return "train-zscore";
    case PC_ENSEMBLE_TEST_MINMAX: return "test-minmax";
    }
    return "unknown";
}

int pc_ensemble_norm_from_name(const char *name) {
    if (name && !strcmp(name, "train-zscore")) return PC_ENSEMBLE_TRAIN_ZSCORE;
    if (name && !strcmp(name, "test-minmax")) return PC_ENSEMBLE_TEST_MINMAX;
    return -1;
}
