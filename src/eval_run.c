/*
 * eval_run.c - the predicting loop of an evaluation: predict every test image of a pc_dataset with a
 * model, load and preprocess its mask under the chosen pc_mask_rule, then pc_eval_aggregate (eval.c). Kept apart from eval.c so that
 * the aggregation links without the model. Maps are laid out one after the other at their own sizes
 * (pc_eval_map_sizes: crop x crop, or each image's size for a tiled model, whose masks are then used
 * at full resolution: pc_mask_for_map).
 */
#include "internal.h"
#include "patchcore.h"
#include "ensemble.h"
#include "maps.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

pc_status pc_eval_run(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_progress_fn progress,
                      void *progress_user) {
    return pc_eval_run_ex(out, model, ds, PC_MASK_RULE_DEFAULT, progress, progress_user, NULL);
}

pc_status pc_eval_run_detail(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_progress_fn progress,
                             void *progress_user, const pc_eval_detail *detail) {
    return pc_eval_run_ex(out, model, ds, PC_MASK_RULE_DEFAULT, progress, progress_user, detail);
}

pc_status pc_eval_run_ex(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                         pc_progress_fn progress, void *progress_user, const pc_eval_detail *detail) {
    return pc_eval_run_jobs(out, model, ds, mask_rule, 1, progress, progress_user, detail);
}

/* What every job of the predicting loop shares; each item writes only its own slots. */
typedef struct eval_job {
    pc_model *model;
    const pc_dataset *ds;
    const pc_eval_detail *detail;
    pc_mask_rule mask_rule;
    const pc_model_info *info;
    const int32_t *mw, *mh; /* each image's map size (pc_eval_map_sizes) */
    const size_t *off;      /* where each image's map and mask start */
    float *maps, *scores;
    uint8_t *masks;
    int32_t *types;
    double *ms;
    pc_progress_fn progress;
    void *progress_user;
    pthread_mutex_t lock; /* progress calls, one at a time and with an increasing count */
    int64_t done;
} eval_job;

static pc_status eval_one(void *user, size_t i) {
    eval_job *j = user;
    const pc_eval_item *it = &j->ds->test[i];
    pc_prediction pr;
    pc_geometry geom;
    double t0 = now_ms();
    pc_status st = pc_model_predict_file(j->model, it->path, &pr, j->maps + j->off[i], &geom);
    j->ms[i] = now_ms() - t0;
    if (st != PC_OK) return pc_fail_context(st, "%s", it->path);
    int32_t gw, gh;
    pc_geometry_map_dims(&geom, &gw, &gh);
    if (gw != j->mw[i] || gh != j->mh[i]) /* the image changed since its size was read */
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: its map is %dx%d, not the %dx%d its size gave", it->path,
                       (int)gw, (int)gh, (int)j->mw[i], (int)j->mh[i]);
    j->scores[i] = pr.score;
    j->types[i] = it->type;
    if (j->detail && j->detail->predictions) j->detail->predictions[i] = pr;
    if (j->detail && j->detail->geometries) j->detail->geometries[i] = geom;
    if (it->mask_path) {
        pc_image m;
        if ((st = pc_image_load_grey(it->mask_path, &m)) != PC_OK) return st;
        st = pc_mask_for_map(j->masks + j->off[i], &m, j->info, j->mw[i], j->mh[i], j->mask_rule);
        pc_image_free(&m);
        if (st != PC_OK) return pc_fail_context(st, "%s", it->mask_path);
    }
    if (j->progress) {
        pthread_mutex_lock(&j->lock);
        int stop = j->progress(j->progress_user, "eval", ++j->done, (int64_t)j->ds->n_test);
        pthread_mutex_unlock(&j->lock);
        if (stop) return pc_fail(PC_ERR_CANCELLED, "evaluation cancelled");
    }
    return PC_OK;
}

pc_status pc_eval_run_jobs(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                           int32_t jobs, pc_progress_fn progress, void *progress_user, const pc_eval_detail *detail) {
    pc_threads_apply();
    pc_clear_error();
    if (!out || !model || !ds) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_run: NULL argument");
    memset(out, 0, sizeof *out);
    if (mask_rule != PC_MASK_RULE_FULL && mask_rule != PC_MASK_RULE_HALF)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_run: unknown mask rule %d (0 full, 1 half)", (int)mask_rule);
    pc_model_info info;
    pc_status st = pc_model_get_info(model, &info);
    if (st != PC_OK) return st;
    if (ds->good_type < 0) return pc_fail(PC_ERR_NOT_FOUND, "%s: no test/good directory", ds->root);
    size_t n = ds->n_test, npix = 0;
    if (n > INT32_MAX) return pc_fail(PC_ERR_TOO_LARGE, "%s: %zu test images", ds->root, n);
    /* Each image's map size and where its map starts (image after image; i * crop * crop untiled). */
    int32_t *mw = pc_malloc(PC_MAX(n, (size_t)1) * sizeof *mw), *mh = pc_malloc(PC_MAX(n, (size_t)1) * sizeof *mh);
    size_t *off = pc_malloc(PC_MAX(n, (size_t)1) * sizeof *off);
    float *own_maps = NULL, *scores = NULL;
    uint8_t *own_masks = NULL;
    int32_t *types = NULL;
    double *ms = NULL;
    if (!mw || !mh || !off) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_eval_run: out of memory");
        goto done;
    }
    if ((st = pc_eval_map_sizes(model, ds, mw, mh, &npix)) != PC_OK) goto done;
    for (size_t i = 0, o = 0; i < n; i++) off[i] = o, o += (size_t)mw[i] * (size_t)mh[i];
    if (npix > ((size_t)1 << 31)) {
        st = pc_fail(PC_ERR_TOO_LARGE, "%s: %zu test images with %zu map pixels exceed 2^31", ds->root, n, npix);
        goto done;
    }
    /* The caller's arrays when given (filled as we go), else our own. */
    const bool given_maps = detail && detail->maps, given_masks = detail && detail->masks;
    own_maps = given_maps ? NULL : pc_malloc(npix * sizeof *own_maps);
    own_masks = given_masks ? NULL : pc_malloc(npix);
    float *maps = given_maps ? detail->maps : own_maps;
    uint8_t *masks = given_masks ? detail->masks : own_masks;
    scores = pc_malloc(n * sizeof *scores);
    types = pc_malloc(n * sizeof *types);
    ms = pc_malloc(n * sizeof *ms);
    if (!scores || !types || !maps || !masks || !ms) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_eval_run: out of memory for %zu maps of %zu pixels in all", n, npix);
        goto done;
    }
    memset(masks, 0, npix);
    if (jobs <= 0) jobs = pc_default_num_jobs(0);
    if ((size_t)jobs > n) jobs = (int32_t)PC_MAX(n, (size_t)1); /* fewer images than jobs: more threads each */
    eval_job j = {.model = model, .ds = ds, .detail = detail, .mask_rule = mask_rule, .info = &info, .mw = mw,
                  .mh = mh, .off = off, .maps = maps, .scores = scores, .masks = masks, .types = types, .ms = ms, .progress = progress,
                  .progress_user = progress_user};
    pthread_mutex_init(&j.lock, NULL);
    st = pc_jobs_run(jobs, pc_job_threads(0, jobs), n, eval_one, &j);
    pthread_mutex_destroy(&j.lock);
    if (st != PC_OK) goto done;
    st = pc_eval_aggregate_sizes(out, scores, maps, masks, types, (const char *const *)ds->type_names, ds->n_types,
                                 ds->good_type, (int32_t)n, mh, mw);
    if (st == PC_OK) {
        double total_ms = 0;
        for (size_t i = 0; i < n; i++) total_ms += ms[i];
        out->mean_predict_ms = total_ms / (double)n;
    }
done:
    pc_free(scores);
    pc_free(types);
    pc_free(ms);
    pc_free(own_maps);
    pc_free(own_masks);
    pc_free(mw), pc_free(mh), pc_free(off);
    return st;
}

pc_status pc_model_regions(const pc_model *model, const float *map, const pc_geometry *g, double pixel_threshold,
                           pc_region *regions, int32_t max, int32_t *n_total) {
    pc_clear_error();
    if (!model || !map || !n_total) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_model_regions: NULL argument");
    pc_model_info info;
    pc_status st = pc_model_get_info(model, &info);
    if (st != PC_OK) return st;
    double t = isnan(pixel_threshold) ? info.pixel_threshold : pixel_threshold;
    if (isnan(t))
        return pc_fail(PC_ERR_INVALID_ARGUMENT,
                       "the model has no pixel threshold: run `patchcore calibrate` or give one");
    /* The geometry gives the map's size (0 x 0 in a hand-filled one: crop x crop); without it the map is
     * the crop, which a tiled model's map is not. */
    if (!g && info.tiling.tile > 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_model_regions: a tiled model's map needs its geometry");
    return pc_regions_from_map(regions, max, n_total, map, g ? 0 : info.crop, t, g);
}

/* The reference's test-set rule (ensemble.h): each member over the whole test set on its own, its
 * scores and maps min-max normalised and summed in member order, then the mean aggregated. */
static pc_status eval_minmax(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                             int32_t jobs, pc_progress_fn progress, void *progress_user, const pc_eval_detail *detail,
                             pc_eval_result *member_results) {
    const int32_t nm = pc_model_member_count(model);
    pc_model_info info0;
    pc_status st = pc_model_get_info(model, &info0);
    if (st) return st;
    const int32_t s0 = info0.crop;
    const size_t n = ds->n_test;
    for (int32_t i = 0; i < nm; i++) { /* members are square (crop x crop): an ensemble does not tile */
        pc_model_info mi;
        if ((st = pc_model_get_info(pc_model_member(model, i), &mi))) return st;
        if (mi.tiling.tile > 0)
            return pc_fail(PC_ERR_UNSUPPORTED, "ensemble member %d tiles: test-minmax needs crop x crop maps", (int)i + 1);
    }
    size_t np0;
    if (!pc_mul3_size(n, (size_t)s0, (size_t)s0, &np0) || np0 > ((size_t)1 << 31))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: %zu test images of %dx%d exceed 2^31 map pixels", ds->root, n, (int)s0,
                       (int)s0);
    const bool given_maps = detail && detail->maps, given_masks = detail && detail->masks;
    float *acc_maps = given_maps ? detail->maps : pc_malloc(np0 * sizeof(float));
    uint8_t *masks = given_masks ? detail->masks : pc_malloc(np0);
    float *acc_scores = pc_calloc(n, sizeof(float));
    int32_t *types = pc_malloc(n * sizeof(int32_t));
    pc_prediction *preds = pc_malloc(n * sizeof *preds);
    if (!acc_maps || !masks || !acc_scores || !types || !preds) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_eval_run: out of memory for %zu maps of %dx%d", n, (int)s0, (int)s0);
        goto done;
    }
    memset(acc_maps, 0, np0 * sizeof(float));
    double ms = 0;
    for (int32_t i = 0; i < nm && !st; i++) {
        pc_model *mm = pc_model_member(model, i);
        pc_model_info info;
        if ((st = pc_model_get_info(mm, &info))) break;
        const int32_t s = info.crop;
        size_t np;
        if (!pc_mul3_size(n, (size_t)s, (size_t)s, &np) || np > ((size_t)1 << 31)) {
            st = pc_fail(PC_ERR_TOO_LARGE, "%s: %zu test images of %dx%d exceed 2^31 map pixels", ds->root, n, (int)s,
                         (int)s);
            break;
        }
        float *maps = pc_malloc(np * sizeof(float));
        float *scores = pc_malloc(n * sizeof(float));
        void *ws = pc_malloc(pc_minmax_workspace_size(s0, s));
        /* member 0's masks are at the ensemble's crop: they are the ones aggregated */
        pc_eval_detail d = {.predictions = preds, .maps = maps, .masks = i == 0 ? masks : NULL,
                            .geometries = i == 0 && detail ? detail->geometries : NULL};
        pc_eval_result r;
        memset(&r, 0, sizeof r);
        if (!maps || !scores || !ws) st = pc_fail(PC_ERR_NO_MEMORY, "pc_eval_run: out of memory for member %d's maps",
                                                  (int)i + 1);
        if (!st) st = pc_eval_run_jobs(&r, mm, ds, mask_rule, jobs, progress, progress_user, &d);
        if (!st) {
            for (size_t k = 0; k < n; k++) scores[k] = preds[k].score;
            pc_minmax_accumulate(acc_scores, acc_maps, (int64_t)n, s0, scores, maps, s, ws);
            ms += r.mean_predict_ms;
            if (member_results) member_results[i] = r;
            else pc_eval_result_free(&r);
        } else {
            pc_fail_context(st, "ensemble member %d", (int)i + 1);
        }
        pc_free(maps), pc_free(scores), pc_free(ws);
    }
    if (st) goto done;
    pc_minmax_finish(acc_scores, acc_maps, (int64_t)n, s0, nm);
    for (size_t k = 0; k < n; k++) types[k] = ds->test[k].type;
    st = pc_eval_aggregate(out, acc_scores, acc_maps, masks, types, (const char *const *)ds->type_names, ds->n_types,
                           ds->good_type, (int32_t)n, s0, s0);
    if (!st) out->mean_predict_ms = ms;
    if (!st && detail && detail->predictions)
        for (size_t k = 0; k < n; k++)
            detail->predictions[k] = (pc_prediction){.score = acc_scores[k], .normalized = NAN, .anomalous = 0};
done:
    if (st && member_results)
        for (int32_t i = 0; i < nm; i++) pc_eval_result_free(&member_results[i]);
    if (!given_maps) pc_free(acc_maps);
    if (!given_masks) pc_free(masks);
    pc_free(acc_scores), pc_free(types), pc_free(preds);
    return st;
}

pc_status pc_eval_run_norm(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                           int32_t jobs, pc_ensemble_norm norm, pc_progress_fn progress, void *progress_user,
                           const pc_eval_detail *detail, pc_eval_result *member_results) {
    pc_threads_apply();
    pc_clear_error();
    if (!out || !model || !ds) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_run: NULL argument");
    memset(out, 0, sizeof *out);
    const int32_t nm = pc_model_member_count(model);
    if (member_results) memset(member_results, 0, (size_t)nm * sizeof *member_results);
    if (norm == PC_ENSEMBLE_TRAIN_ZSCORE)
        return pc_eval_run_jobs(out, model, ds, mask_rule, jobs, progress, progress_user, detail);
    if (norm != PC_ENSEMBLE_TEST_MINMAX)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_run: unknown ensemble normalisation %d", (int)norm);
    if (ds->good_type < 0) return pc_fail(PC_ERR_NOT_FOUND, "%s: no test/good directory", ds->root);
    return eval_minmax(out, model, ds, mask_rule, jobs, progress, progress_user, detail, member_results);
}
