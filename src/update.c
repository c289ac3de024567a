/*
 * update.c - growing a model's memory bank without refitting (docs/update.md): pc_model_update adds
 * new good images (their features computed with the model's own backbone and settings, then chosen by
 * the greedy coreset continued from the bank), pc_model_merge joins two compatible models' banks.
 *
 * Both build the new bank, its norms and its kNN index first and swap them in at the end, so a failure
 * leaves the model as it was.
 */
#include "coreset.h"
#include "model_impl.h"
#include "tile.h"
#include "roi.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const RULE_NAMES[] = {"auto", "ratio", "radius", "all"};

const char *pc_update_rule_name(pc_update_rule rule) {
    return (unsigned)rule < 4 ? RULE_NAMES[rule] : "unknown";
}

int pc_update_rule_from_name(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (strcmp(name, RULE_NAMES[i]) == 0) return i;
    return -1;
}

void pc_update_options_init(pc_update_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->rule = PC_UPDATE_AUTO;
    opt->batch_size = 8;
}

/* The model's bank replaced by `bank` (n x dim, owned; ownership taken on success): norms, index, and
 * the prediction contexts (sized for the old index) rebuilt. On failure the model is unchanged and
 * bank is freed. */
static pc_status swap_bank(pc_model *m, float *bank, int64_t n) {
    float *norms = pc_malloc((size_t)n * sizeof(float));
    if (!norms) {
        pc_free(bank);
        return pc_fail(PC_ERR_NO_MEMORY, "cannot allocate the norms of a %lld-entry bank", (long long)n);
    }
    pc_knn_norms(norms, bank, n, m->dim);
    pc_knn_index *kix = NULL;
    pc_status st = pc_model_index_for(m, bank, norms, n, &kix);
    if (st) {
        pc_free(bank), pc_free(norms);
        return st;
    }
    pc_model_drop_contexts(m);
    pc_knn_index_free(m->kix);
    pc_free(m->bank_owned);
    pc_free(m->bank_norms);
    m->bank_owned = bank;
    m->bank = bank;
    m->bank_n = n;
    m->bank_norms = norms;
    m->kix = kix;
    /* the fit's bookkeeping no longer describes the bank */
    pc_free(m->coreset_idx), m->coreset_idx = NULL;
    pc_free(m->usable_src), m->usable_src = NULL;
    return PC_OK;
}

/* old bank rows followed by n_new rows of extra (or of ff's rows sel) */
static pc_status grown_bank(const pc_model *m, pc_fit_feats *ff, const int64_t *sel, const float *extra, int64_t n_new,
                            float **out) {
    const size_t D = (size_t)m->dim;
    *out = NULL;
    float *bank = pc_malloc((size_t)(m->bank_n + n_new) * D * sizeof(float));
    if (!bank)
        return pc_fail(PC_ERR_NO_MEMORY, "cannot allocate a bank of %lld entries", (long long)(m->bank_n + n_new));
    memcpy(bank, m->bank, (size_t)m->bank_n * D * sizeof(float));
    pc_status st = PC_OK;
    if (extra) memcpy(bank + (size_t)m->bank_n * D, extra, (size_t)n_new * D * sizeof(float));
    else if (n_new) st = pc_fit_feats_gather(ff, sel, n_new, bank + (size_t)m->bank_n * D);
    if (st) {
        pc_free(bank);
        return st;
    }
    *out = bank;
    return PC_OK;
}

/* The bank's rows in the coreset's projected space (bank_n x P), projected a grid's worth of rows per
 * call as the fit projects one image at a time. */
static pc_status project_bank(const pc_model *m, float **out) {
    const int32_t D = m->dim, P = m->projection_dim;
    *out = NULL;
    float *proj = pc_malloc((size_t)D * P * sizeof(float));
    float *pjb = pc_malloc((size_t)m->bank_n * P * sizeof(float));
    if (!proj || !pjb) {
        pc_free(proj), pc_free(pjb);
        return pc_fail(PC_ERR_NO_MEMORY, "update: cannot allocate the bank's projection");
    }
    pc_coreset_projection(proj, m->seed, D, P);
    const int64_t chunk = PC_MAX((int64_t)m->grid_h * m->grid_w, 1);
    for (int64_t r = 0; r < m->bank_n; r += chunk)
        pc_coreset_project(pjb + (size_t)r * P, m->bank + (size_t)r * D, PC_MIN(chunk, m->bank_n - r), D, proj, P);
    pc_free(proj);
    *out = pjb;
    return PC_OK;
}

static pc_update_rule resolve_rule(const pc_model *m, pc_update_rule r) {
    if (r != PC_UPDATE_AUTO) return r;
    if (m->sampler == PC_SAMPLER_NONE) return PC_UPDATE_ALL;
    if (m->sampler == PC_SAMPLER_APPROX_GREEDY && !isnan(m->coverage_radius)) return PC_UPDATE_RADIUS;
    return PC_UPDATE_RATIO;
}

/* The ratio a fit of this model kept: its coreset ratio, or for a fit with an exact size the bank's
 * share of the patches. */
static double model_ratio(const pc_model *m) {
    if (m->sampler == PC_SAMPLER_NONE) return 1.0;
    if (m->coreset_size_requested > 0 && m->n_patches_total > 0)
        return PC_MIN(1.0, (double)m->bank_n / (double)m->n_patches_total);
    return m->coreset_ratio;
}

static pc_status update_common(pc_model *m, const pc_update_options *uo, const pc_fit_source *src, size_t n_in,
                               pc_update_report *report) {
    pc_threads_apply();
    pc_clear_error();
    if (!m) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: model is NULL");
    pc_update_options defaults;
    pc_update_options_init(&defaults);
    if (!uo) uo = &defaults;
    if (m->n_members)
        return pc_fail(PC_ERR_UNSUPPORTED, "update: the model is an ensemble of %d members; update works on a single "
                       "model (refit the ensemble, docs/update.md)", (int)m->n_members);
    if (n_in == 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: no images given");
    if (n_in > (size_t)INT32_MAX) return pc_fail(PC_ERR_TOO_LARGE, "update: too many images");
    if ((unsigned)uo->rule > PC_UPDATE_ALL) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: unknown rule %d", (int)uo->rule);
    if (uo->max_add < 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: max_add must be >= 0 (0 = no limit)");
    if (uo->batch_size < 1 || uo->batch_size > 256)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: batch size must be 1..256");
    if (uo->jobs < 0 || uo->jobs > 256) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: jobs must be 0..256");
    if (uo->max_memory < 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: the memory budget must be >= 0");
    const pc_update_rule rule = resolve_rule(m, uo->rule);
    if (rule == PC_UPDATE_RADIUS) {
        if (m->sampler != PC_SAMPLER_APPROX_GREEDY)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: rule radius needs a model fitted with the approximate greedy "
                           "coreset (this one used sampler %s)", m->sampler == PC_SAMPLER_NONE ? "none" : "random");
        if (isnan(m->coverage_radius))
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: the model does not record its coverage radius (written "
                           "before patchcore 0.3, or fitted with a caller-supplied projection): use rule ratio");
    }
    if (rule == PC_UPDATE_RATIO && m->sampler == PC_SAMPLER_NONE)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: the model keeps every patch (sampler none): use rule all");

    /* the fit's settings, for the extraction (features, and the projection when the rule needs it) */
    pc_fit_options o;
    pc_fit_options_init(&o);
    o.arch = m->arch;
    memcpy(o.layers, m->layers, sizeof o.layers);
    o.n_layers = m->n_layers;
    o.resize = m->resize, o.crop = m->crop, o.patch = m->patch, o.pre_dim = m->pre_dim, o.dim = m->dim, o.k = m->k;
    o.sampler = (rule == PC_UPDATE_RADIUS || (rule == PC_UPDATE_RATIO && m->sampler == PC_SAMPLER_APPROX_GREEDY))
                    ? PC_SAMPLER_APPROX_GREEDY
                    : PC_SAMPLER_NONE; /* no projection needed */
    o.coreset_ratio = model_ratio(m);
    o.projection_dim = m->projection_dim, o.n_starts = m->n_starts, o.seed = m->seed;
    o.batch_size = uo->batch_size, o.jobs = uo->jobs, o.max_memory = uo->max_memory;
    o.progress = uo->progress, o.progress_user = uo->progress_user;
    o.on_image_error = uo->on_image_error, o.on_image_error_user = uo->on_image_error_user;
    o.bn_stats = m->bn_stats, o.precision = m->precision;
    o.tiling = m->tiling;

    pc_fit_feats ff = {.spill = {.fd = -1}};
    pc_tile_items ti = {0};
    pc_fit_source tsrc;
    pc_status st = PC_OK;
    if (m->tiling.tile) { /* every tile of every new image is one input, as in the fit (docs/tiles.md) */
        if ((st = pc_tile_items_build(&o, src->paths, src->images, n_in, &ti))) return pc_fail_context(st, "update");
        tsrc = *src;
        tsrc.tiles = &ti;
        src = &tsrc;
        n_in = ti.n;
    }
    int64_t *sel = NULL;
    float *pjb = NULL, *dist = NULL, *bank = NULL;
    const pc_sampler saved = m->sampler;
    m->sampler = o.sampler; /* the extraction projects when the sampler is the approximate greedy one */
    st = pc_model_extract(m, &o, src, n_in, &ff);
    m->sampler = saved;
    if (st) {
        pc_tile_items_free(&ti);
        return pc_fail_context(st, "update");
    }
    /* the images behind the usable inputs (tiles are image-major: count the changes of image) */
    int32_t n_images = (int32_t)ff.used;
    if (m->tiling.tile) {
        n_images = 0;
        for (size_t u = 0, last = SIZE_MAX; u < ff.used; u++) {
            const size_t img = (size_t)ti.item[ff.img_of ? (size_t)ff.img_of[u] : u].img;
            if (img != last) n_images++, last = img;
        }
    }
    /* With a region of interest only the rows inside it are candidates, as in the fit (docs/roi.md): rows
     * lists them, the projection is compacted to them, and the choice is translated back. */
    int64_t *rows = NULL, N = (int64_t)(ff.used * ff.hw);
    if (m->roi.data) {
        st = pc_roi_fit_rows(&rows, &N, &m->roi, ff.sizes, ff.img_of, ff.used, m->resize, m->crop, m->grid_h, m->grid_w);
        if (st) goto done;
        for (int64_t i = 0; ff.pj && i < N; i++) /* rows[i] >= i: each row moves down or stays */
            memmove(ff.pj + (size_t)i * ff.P, ff.pj + (size_t)rows[i] * ff.P, ff.P * sizeof(float));
    }
    int64_t n_sel = 0;
    double radius_new = NAN, radius_after = m->coverage_radius;
    int64_t cap = uo->max_add > 0 ? PC_MIN(uo->max_add, N) : N;
    if (rule == PC_UPDATE_ALL) {
        n_sel = cap;
        if (!(sel = pc_malloc((size_t)PC_MAX(n_sel, 1) * sizeof *sel))) goto oom;
        for (int64_t i = 0; i < n_sel; i++) sel[i] = i;
        if (n_sel == N) radius_new = 0;
        if (n_sel < N) radius_after = NAN; /* some new patches are not covered by a known radius */
    } else if (m->sampler == PC_SAMPLER_RANDOM) {
        n_sel = PC_MIN(cap, pc_coreset_size(N, model_ratio(m)));
        if (!(sel = pc_malloc((size_t)PC_MAX(n_sel, 1) * sizeof *sel))) goto oom;
        /* a fresh stream per update: the seed mixed with the patches already seen */
        st = pc_coreset_select(sel, PC_SAMPLER_RANDOM, NULL, N, m->dim, n_sel,
                               m->seed ^ (uint64_t)m->n_patches_total * 0x9E3779B97F4A7C15ull, uo->progress,
                               uo->progress_user);
        if (st) goto done;
    } else {
        /* the greedy coreset continued from the bank: each new patch starts at its distance to the bank */
        const int64_t n_max = rule == PC_UPDATE_RADIUS ? cap : PC_MIN(cap, pc_coreset_size(N, model_ratio(m)));
        const float stop = rule == PC_UPDATE_RADIUS ? (float)(m->coverage_radius * (1.0 + PC_UPDATE_RADIUS_SLACK)) : -1.f;
        if ((st = project_bank(m, &pjb))) goto done;
        if (!(dist = pc_malloc((size_t)N * sizeof *dist)) || !(sel = pc_malloc((size_t)PC_MAX(n_max, 1) * sizeof *sel)))
            goto oom;
        if ((st = pc_coreset_min_distances(dist, ff.pj, N, pjb, m->bank_n, m->projection_dim))) goto done;
        pc_free(pjb), pjb = NULL;
        float r = NAN;
        if (n_max > 0) {
            st = pc_coreset_greedy_continue(sel, &n_sel, &r, ff.pj, N, m->projection_dim, dist, n_max, stop, uo->progress,
                                            uo->progress_user);
            if (st) goto done;
        } else {
            r = 0.f;
            for (int64_t i = 0; i < N; i++) r = PC_MAX(r, dist[i]);
        }
        radius_new = r;
        radius_after = isnan(m->coverage_radius) ? NAN : PC_MAX(m->coverage_radius, (double)r);
        pc_free(ff.pj), ff.pj = NULL;
    }
    for (int64_t i = 0; rows && i < n_sel; i++) sel[i] = rows[sel[i]];
    if ((st = grown_bank(m, &ff, sel, NULL, n_sel, &bank))) goto done;
    const int64_t n_before = m->bank_n;
    const double radius_before = m->coverage_radius;
    if ((st = swap_bank(m, bank, n_before + n_sel))) goto done;
    m->n_train_images += n_images;
    m->n_patches_total += N;
    m->coverage_radius = radius_after;
    if (n_sel > 0 && (!isnan(m->image_threshold) || !isnan(m->pixel_threshold))) m->thresholds_stale = 1;
    if (report) {
        *report = (pc_update_report){.rule = rule, .n_images = n_images, .n_patches = N, .n_added = n_sel,
                                     .bank_size = m->bank_n, .radius_before = radius_before, .radius_new = radius_new,
                                     .radius_after = radius_after};
    }
    goto done;
oom:
    st = pc_fail(PC_ERR_NO_MEMORY, "update: out of memory for %lld new patches", (long long)N);
done:
    pc_fit_feats_free(&ff);
    pc_tile_items_free(&ti);
    pc_free(sel), pc_free(pjb), pc_free(dist), pc_free(rows);
    if (st) pc_copy_error(m->errmsg);
    return st;
}

pc_status pc_model_update(pc_model *m, const pc_update_options *opt, const char *const *paths, size_t n_paths,
                          pc_update_report *report) {
    if (!paths && n_paths) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: paths is NULL");
    pc_fit_source s = {.paths = paths};
    return update_common(m, opt, &s, n_paths, report);
}

pc_status pc_model_update_images(pc_model *m, const pc_update_options *opt, const pc_image *images, size_t n_images,
                                 pc_update_report *report) {
    if (!images && n_images) return pc_fail(PC_ERR_INVALID_ARGUMENT, "update: images is NULL");
    pc_fit_source s = {.images = images};
    return update_common(m, opt, &s, n_images, report);
}

/* ----------------------------------------------------------------------------------------------
 * Merge
 * -------------------------------------------------------------------------------------------- */

/* The first setting in which a and b differ (what a merge needs equal), written into why; 0 if none. */
static int differs(const pc_model *a, const pc_model *b, char *why, size_t size) {
#define DIFF_INT(field, label)                                                                              \
    if (a->field != b->field) {                                                                             \
        snprintf(why, size, "%s differs (%lld vs %lld)", label, (long long)a->field, (long long)b->field);   \
        return 1;                                                                                           \
    }
    if (a->arch != b->arch) {
        snprintf(why, size, "the backbone differs (%s vs %s)", pc_arch_name(a->arch), pc_arch_name(b->arch));
        return 1;
    }
    DIFF_INT(n_layers, "the number of layers");
    for (int i = 0; i < a->n_layers; i++) DIFF_INT(layers[i], "a layer");
    DIFF_INT(resize, "resize");
    DIFF_INT(crop, "crop");
    DIFF_INT(patch, "the patch size");
    DIFF_INT(pre_dim, "the per-layer dimension");
    DIFF_INT(dim, "the feature dimension");
    DIFF_INT(k, "k");
    DIFF_INT(reweight_b, "the Eq. 7 reweighting");
    if (a->bn_stats != b->bn_stats) {
        snprintf(why, size, "the batch-norm statistics differ (%s vs %s)", pc_bn_stats_name(a->bn_stats),
                 pc_bn_stats_name(b->bn_stats));
        return 1;
    }
    if (a->precision != b->precision) {
        snprintf(why, size, "the precision differs (%s vs %s)", pc_precision_name(a->precision),
                 pc_precision_name(b->precision));
        return 1;
    }
    DIFF_INT(tiling.tile, "the tile size");
    if (a->tiling.tile && a->tiling.scale != b->tiling.scale) { /* the overlap only chose the tiles */
        snprintf(why, size, "the tile scale differs (%g vs %g)", a->tiling.scale, b->tiling.scale);
        return 1;
    }
    if ((a->roi.data != NULL) != (b->roi.data != NULL) ||
        (a->roi.data && (a->roi.width != b->roi.width || a->roi.height != b->roi.height ||
                         memcmp(a->roi.data, b->roi.data, (size_t)a->roi.width * (size_t)a->roi.height) != 0))) {
        snprintf(why, size, "the region of interest differs (%s)",
                 a->roi.data && b->roi.data ? "another mask" : a->roi.data ? "only the first has one" : "only the second has one");
        return 1;
    }
#undef DIFF_INT
    const pc_tensor *ta, *tb;
    size_t na, nb;
    pc_model_backbone_tensors(a, &ta, &na);
    pc_model_backbone_tensors(b, &tb, &nb);
    size_t ia = 0, ib = 0;
    for (;;) { /* the float tensors in order (integer bookkeeping tensors have no data) */
        while (ia < na && !ta[ia].data) ia++;
        while (ib < nb && !tb[ib].data) ib++;
        if (ia == na || ib == nb) break;
        if (strcmp(ta[ia].name, tb[ib].name) != 0 || ta[ia].numel != tb[ib].numel ||
            memcmp(ta[ia].data, tb[ib].data, (size_t)ta[ia].numel * sizeof(float)) != 0) {
            snprintf(why, size, "the backbone weights differ (tensor %s)", ta[ia].name);
            return 1;
        }
        ia++, ib++;
    }
    if (ia != na || ib != nb) {
        snprintf(why, size, "the backbone weights differ (tensor %s has no counterpart)",
                 ia < na ? ta[ia].name : tb[ib].name);
        return 1;
    }
    return 0;
}

pc_status pc_model_merge(pc_model *m, const pc_model *other, pc_update_report *report) {
    pc_clear_error();
    if (!m || !other) return pc_fail(PC_ERR_INVALID_ARGUMENT, "merge: NULL model");
    if (m == other) return pc_fail(PC_ERR_INVALID_ARGUMENT, "merge: a model cannot be merged with itself");
    if (m->n_members || other->n_members)
        return pc_fail(PC_ERR_UNSUPPORTED, "merge: ensembles cannot be merged (only single models)");
    char why[512];
    if (differs(m, other, why, sizeof why))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "merge: the models are not compatible: %s", why);
    float *bank;
    pc_status st = grown_bank(m, NULL, NULL, other->bank, other->bank_n, &bank);
    const int64_t n_before = m->bank_n;
    const double radius_before = m->coverage_radius;
    if (!st) st = swap_bank(m, bank, n_before + other->bank_n);
    if (st) {
        pc_copy_error(m->errmsg);
        return st;
    }
    /* every training patch of either is within its own radius of its own bank, a part of this one; the
     * radii are comparable only in the same projected space */
    const bool same_space = m->sampler == PC_SAMPLER_APPROX_GREEDY && other->sampler == PC_SAMPLER_APPROX_GREEDY &&
                            m->seed == other->seed && m->projection_dim == other->projection_dim;
    const bool zero = m->sampler == PC_SAMPLER_NONE && other->sampler == PC_SAMPLER_NONE;
    m->coverage_radius = zero ? 0.0 : same_space ? PC_MAX(m->coverage_radius, other->coverage_radius) : NAN;
    if (isnan(other->coverage_radius) && !zero) m->coverage_radius = NAN;
    m->n_train_images += other->n_train_images;
    m->n_patches_total += other->n_patches_total;
    if (!isnan(m->image_threshold) || !isnan(m->pixel_threshold)) m->thresholds_stale = 1;
    if (report) {
        *report = (pc_update_report){.rule = PC_UPDATE_ALL, .n_images = other->n_train_images,
                                     .n_patches = other->n_patches_total, .n_added = other->bank_n,
                                     .bank_size = m->bank_n, .radius_before = radius_before, .radius_new = NAN,
                                     .radius_after = m->coverage_radius};
    }
    return PC_OK;
}
