/*
 * calibrate_model.c - thresholds by a named method (pc_threshold_by_method) and the calibration of a
 * model from good images, or from good + defective images with masks (F1, masks under a pc_mask_rule),
 * pc_model_calibrate(_ex). Maps are crop x crop, or for a tiled model each image's own size (read
 * before predicting, so that every buffer is sized once); a tiled model's masks are used at full
 * resolution (pc_mask_for_map).
 * docs/evaluation.md "Calibration".
 */
#include "internal.h"
#include "patchcore.h"
#include "maps.h"

#include <math.h>
#include <string.h>

static const char *const names[] = {"conformal", "quantile", "mean-std", "false-alarm", "f1"};

int pc_calib_method_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *pc_calib_method_name(pc_calib_method m) {
    return (unsigned)m < 5 ? names[m] : "unknown";
}

pc_status pc_threshold_by_method(double *t, pc_calib_method m, double param, const float *scores,
                                 const uint8_t *labels, size_t n) {
    switch (m) {
    case PC_CALIB_CONFORMAL: return pc_threshold_conformal(t, NULL, scores, n, param);
    case PC_CALIB_QUANTILE: return pc_threshold_quantile(t, scores, n, param);
    case PC_CALIB_MEAN_STD: return pc_threshold_mean_std(t, scores, n, param);
    case PC_CALIB_FALSE_ALARM: return pc_threshold_false_alarm(t, scores, n, param);
    case PC_CALIB_F1:
        if (!labels) return pc_fail(PC_ERR_INVALID_ARGUMENT, "F1 calibration needs labelled (defective) samples");
        return pc_threshold_f1(t, NULL, scores, labels, n);
    }
    return pc_fail(PC_ERR_INVALID_ARGUMENT, "unknown calibration method %d", (int)m);
}

static float max_of(const float *v, size_t n) {
    float m = v[0];
    for (size_t i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

pc_status pc_model_calibrate(pc_model *model, pc_calib_method method, double param, const char *const *good,
                             size_t n_good, const char *const *defective, const char *const *masks,
                             size_t n_def, pc_progress_fn progress, void *user, pc_calibration *report) {
    return pc_model_calibrate_ex(model, method, param, good, n_good, defective, masks, n_def, PC_MASK_RULE_DEFAULT,
                                 progress, user, report);
}

pc_status pc_model_calibrate_ex(pc_model *model, pc_calib_method method, double param, const char *const *good,
                                size_t n_good, const char *const *defective, const char *const *masks,
                                size_t n_def, pc_mask_rule mask_rule, pc_progress_fn progress, void *user,
                                pc_calibration *report) {
    pc_clear_error();
    if (mask_rule != PC_MASK_RULE_FULL && mask_rule != PC_MASK_RULE_HALF)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "calibration: unknown mask rule %d (0 full, 1 half)", (int)mask_rule);
    if (!model || (n_good && !good) || (n_def && (!defective || !masks)) || n_good == 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "calibration needs a model and at least one good image");
    if ((method == PC_CALIB_F1) != (n_def > 0))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, method == PC_CALIB_F1
                                                    ? "F1 calibration needs defective images with masks"
                                                    : "defective images are used only by the f1 method");
    pc_model_info info;
    pc_status st = pc_model_get_info(model, &info);
    if (st != PC_OK) return st;
    const size_t n = n_good + n_def;
    const bool keep_maps = n_def > 0;
    /* every PIXEL_STRIDE-th pixel of each good map, for the overlay's pixel scale */
    enum { PIXEL_STRIDE = 7 };
    /* Each image's map size: crop x crop, or a tiled model's image size. The maps are kept one after
     * the other (F1) or one at a time in a buffer for the largest. */
    size_t *s2 = pc_malloc(n * sizeof *s2), npix = 0, max_s2 = 0, n_nom = 0, n_nominal = 0;
    int32_t *mw = pc_malloc(n * sizeof *mw), *mh = pc_malloc(n * sizeof *mh);
    float *scores = NULL, *maxima = NULL, *maps = NULL, *nominal = NULL;
    uint8_t *labels = NULL, *pmask = NULL;
    if (!s2 || !mw || !mh) {
        st = pc_fail(PC_ERR_NO_MEMORY, "calibration: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *path = i < n_good ? good[i] : defective[i - n_good];
        mw[i] = mh[i] = info.crop;
        if (info.tiling.tile > 0) {
            int32_t iw, ih;
            if ((st = pc_image_file_size(path, &iw, &ih)) != PC_OK) goto done;
            if ((st = pc_model_map_size(model, iw, ih, NULL, &mw[i], &mh[i])) != PC_OK) {
                st = pc_fail_context(st, "%s", path);
                goto done;
            }
        }
        s2[i] = (size_t)mw[i] * (size_t)mh[i];
        max_s2 = PC_MAX(max_s2, s2[i]);
        npix += keep_maps ? s2[i] : 0;
        if (i < n_good) n_nom += (s2[i] + PIXEL_STRIDE - 1) / PIXEL_STRIDE;
        if (npix > ((size_t)1 << 31) || max_s2 > ((size_t)1 << 31)) {
            st = pc_fail(PC_ERR_TOO_LARGE, "calibration: %zu maps exceed 2^31 pixels", n);
            goto done;
        }
    }
    if (!keep_maps) npix = max_s2;
    scores = pc_malloc(n * sizeof *scores), maxima = pc_malloc(n * sizeof *maxima);
    labels = pc_malloc(n);
    maps = pc_malloc(npix * sizeof *maps);
    pmask = keep_maps ? pc_calloc(npix, 1) : NULL;
    nominal = pc_malloc(n_nom * sizeof *nominal);
    if (!scores || !maxima || !labels || !maps || (keep_maps && !pmask) || !nominal) {
        st = pc_fail(PC_ERR_NO_MEMORY, "calibration: out of memory");
        goto done;
    }
    for (size_t i = 0, off = 0; i < n; i++) {
        const char *path = i < n_good ? good[i] : defective[i - n_good];
        float *map = maps + (keep_maps ? off : 0);
        pc_prediction pr;
        pc_geometry geom;
        if ((st = pc_model_predict_file(model, path, &pr, map, &geom)) != PC_OK) {
            st = pc_fail_context(st, "%s", path);
            goto done;
        }
        int32_t gw, gh;
        pc_geometry_map_dims(&geom, &gw, &gh);
        if (gw != mw[i] || gh != mh[i]) {
            st = pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: its map is %dx%d, not the %dx%d its size gave", path, (int)gw,
                         (int)gh, (int)mw[i], (int)mh[i]);
            goto done;
        }
        scores[i] = pr.score;
        maxima[i] = max_of(map, s2[i]);
        labels[i] = i >= n_good;
        if (i < n_good)
            for (size_t p = 0; p < s2[i]; p += PIXEL_STRIDE) nominal[n_nominal++] = map[p];
        if (i >= n_good) {
            pc_image m;
            const char *mp = masks[i - n_good];
            if ((st = pc_image_load_grey(mp, &m)) != PC_OK) goto done;
            st = pc_mask_for_map(pmask + off, &m, &info, mw[i], mh[i], mask_rule);
            pc_image_free(&m);
            if (st != PC_OK) {
                st = pc_fail_context(st, "%s", mp);
                goto done;
            }
        }
        off += keep_maps ? s2[i] : 0;
        if (progress && progress(user, "calibrate", (int64_t)i + 1, (int64_t)n)) {
            st = pc_fail(PC_ERR_CANCELLED, "calibration cancelled");
            goto done;
        }
    }
    double ti, tp, scale, pscale;
    if (method == PC_CALIB_F1) {
        if ((st = pc_threshold_f1(&ti, NULL, scores, labels, n)) != PC_OK) goto done;
        if ((st = pc_threshold_f1(&tp, NULL, maps, pmask, npix)) != PC_OK) goto done;
    } else {
        if ((st = pc_threshold_by_method(&ti, method, param, scores, NULL, n_good)) != PC_OK) goto done;
        if ((st = pc_threshold_by_method(&tp, method, param, maxima, NULL, n_good)) != PC_OK) goto done;
    }
    if ((st = pc_threshold_scale(&scale, ti, scores, n_good)) != PC_OK) goto done;
    if ((st = pc_threshold_scale(&pscale, tp, nominal, n_nominal)) != PC_OK) goto done;
    if ((st = pc_model_set_thresholds(model, ti, tp, scale)) != PC_OK) goto done;
    if ((st = pc_model_set_pixel_scale(model, pscale)) != PC_OK) goto done;
    if (report) *report = (pc_calibration){ti, tp, scale, n_good, n_def, pscale};
done:
    pc_free(scores);
    pc_free(maxima);
    pc_free(labels);
    pc_free(maps);
    pc_free(pmask);
    pc_free(nominal);
    pc_free(s2), pc_free(mw), pc_free(mh);
    return st;
}
