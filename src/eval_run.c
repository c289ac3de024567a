/*
 * eval_run.c - the predicting loop of an evaluation: predict every test image of a pc_dataset with a
 * model, load and preprocess its mask under the chosen pc_mask_rule, then pc_eval_aggregate (eval.c). Kept apart from eval.c so that
 * the aggregation links without the model.
 */
#include "internal.h"
#include "patchcore.h"

#include <math.h>
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
    pc_clear_error();
    if (!out || !model || !ds) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_run: NULL argument");
    memset(out, 0, sizeof *out);
    if (mask_rule != PC_MASK_RULE_FULL && mask_rule != PC_MASK_RULE_HALF)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_run: unknown mask rule %d (0 full, 1 half)", (int)mask_rule);
    pc_model_info info;
    pc_status st = pc_model_get_info(model, &info);
    if (st != PC_OK) return st;
    if (ds->good_type < 0) return pc_fail(PC_ERR_NOT_FOUND, "%s: no test/good directory", ds->root);
    int32_t s = info.crop;
    size_t n = ds->n_test, npix;
    if (n > INT32_MAX || !pc_mul3_size(n, (size_t)s, (size_t)s, &npix) || npix > ((size_t)1 << 31))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: %zu test images of %dx%d exceed 2^31 map pixels", ds->root, n, (int)s,
                       (int)s);
    /* The caller's arrays when given (filled as we go), else our own. */
    const bool given_maps = detail && detail->maps, given_masks = detail && detail->masks;
    float *own_maps = given_maps ? NULL : pc_malloc(npix * sizeof *own_maps);
    uint8_t *own_masks = given_masks ? NULL : pc_malloc(npix);
    float *maps = given_maps ? detail->maps : own_maps;
    uint8_t *masks = given_masks ? detail->masks : own_masks;
    float *scores = pc_malloc(n * sizeof *scores);
    int32_t *types = pc_malloc(n * sizeof *types);
    if (!scores || !types || !maps || !masks) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_eval_run: out of memory for %zu maps of %dx%d", n, (int)s, (int)s);
        goto done;
    }
    memset(masks, 0, npix);
    double total_ms = 0;
    for (size_t i = 0; i < n; i++) {
        const pc_eval_item *it = &ds->test[i];
        pc_prediction pr;
        double t0 = now_ms();
        pc_geometry geom;
        st = pc_model_predict_file(model, it->path, &pr, maps + i * (size_t)s * s, &geom);
        total_ms += now_ms() - t0;
        if (st != PC_OK) {
            st = pc_fail_context(st, "%s", it->path);
            goto done;
        }
        scores[i] = pr.score;
        types[i] = it->type;
        if (detail && detail->predictions) detail->predictions[i] = pr;
        if (detail && detail->geometries) detail->geometries[i] = geom;
        if (it->mask_path) {
            pc_image m;
            if ((st = pc_image_load_grey(it->mask_path, &m)) != PC_OK) goto done;
            st = pc_preprocess_mask_ex(masks + i * (size_t)s * s, &m, info.resize, info.crop, mask_rule);
            pc_image_free(&m);
            if (st != PC_OK) {
                st = pc_fail_context(st, "%s", it->mask_path);
                goto done;
            }
        }
        if (progress && progress(progress_user, "eval", (int64_t)i + 1, (int64_t)n)) {
            st = pc_fail(PC_ERR_CANCELLED, "evaluation cancelled");
            goto done;
        }
    }
    st = pc_eval_aggregate(out, scores, maps, masks, types, (const char *const *)ds->type_names, ds->n_types,
                           ds->good_type, (int32_t)n, s, s);
    if (st == PC_OK) out->mean_predict_ms = total_ms / (double)n;
done:
    pc_free(scores);
    pc_free(types);
    pc_free(own_maps);
    pc_free(own_masks);
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
    return pc_regions_from_map(regions, max, n_total, map, info.crop, t, g);
}
