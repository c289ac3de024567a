/*
 * maps.c - what the consumers of prediction maps share now that a map need not be the crop x crop
 * square (a tiled prediction's map has the original image's size): the ground-truth mask of a map,
 * an image file's size without decoding its pixels, and the map sizes of an evaluation's test set
 * (pc_eval_map_sizes). The rules are in maps.h and docs/evaluation.md.
 */
#include "maps.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

pc_status pc_mask_for_map(uint8_t *out, const pc_image *grey, const pc_model_info *info, int32_t mw, int32_t mh,
                          pc_mask_rule rule) {
    if (!out || !grey || !grey->data || !info || mw < 1 || mh < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "mask: bad arguments");
    if (rule != PC_MASK_RULE_FULL && rule != PC_MASK_RULE_HALF)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "mask: unknown mask rule %d (0 full, 1 half)", (int)rule);
    if (info->tiling.tile > 0) {
        if (grey->channels != 1)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "mask: expected a grey mask, not %d channels", (int)grey->channels);
        if (grey->width != mw || grey->height != mh)
            return pc_fail(PC_ERR_INVALID_ARGUMENT,
                           "the mask is %dx%d but the tiled map (the image's size) is %dx%d: a tiled model's "
                           "masks are used at full resolution and must have the image's size",
                           (int)grey->width, (int)grey->height, (int)mw, (int)mh);
        /* The same thresholds as pc_preprocess_mask_ex applies after its resize (full: the reference's
         * ToTensor(v) == 1, i.e. v == 255; half: v >= 128), here on the pixels themselves. */
        const uint8_t lo = rule == PC_MASK_RULE_FULL ? 255 : 128;
        const size_t n = (size_t)mw * (size_t)mh;
        for (size_t p = 0; p < n; p++) out[p] = grey->data[p] >= lo;
        return PC_OK;
    }
    if (mw != info->crop || mh != info->crop)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "mask: a map of %dx%d is not the model's %dx%d crop", (int)mw, (int)mh,
                       (int)info->crop, (int)info->crop);
    return pc_preprocess_mask_ex(out, grey, info->resize, info->crop, rule);
}

pc_status pc_image_file_size(const char *path, int32_t *width, int32_t *height) {
    if (!path || !width || !height) return pc_fail(PC_ERR_INVALID_ARGUMENT, "image size: NULL argument");
    /* PNG: the 8-byte signature, then the IHDR chunk (length 13, "IHDR", width, height big-endian). */
    uint8_t h[24];
    FILE *f = fopen(path, "rb");
    if (!f) return pc_fail(errno == ENOENT ? PC_ERR_NOT_FOUND : PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (got == sizeof h && memcmp(h, sig, 8) == 0 && memcmp(h + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)h[16] << 24 | (uint32_t)h[17] << 16 | (uint32_t)h[18] << 8 | h[19];
        uint32_t hh = (uint32_t)h[20] << 24 | (uint32_t)h[21] << 16 | (uint32_t)h[22] << 8 | h[23];
        if (w >= 1 && hh >= 1 && (uint64_t)w * hh <= (uint64_t)PC_IMAGE_MAX_PIXELS && w <= INT32_MAX && hh <= INT32_MAX) {
            *width = (int32_t)w, *height = (int32_t)hh;
            return PC_OK;
        }
        /* out of range: let the decoder say what is wrong */
    }
    pc_image img;
    pc_status st = pc_image_load(path, &img);
    if (st) return st;
    *width = img.width, *height = img.height;
    pc_image_free(&img);
    return PC_OK;
}

pc_status pc_eval_map_sizes(const pc_model *model, const pc_dataset *ds, int32_t *widths, int32_t *heights,
                            size_t *total) {
    pc_clear_error();
    if (!model || !ds || !total) return pc_fail(PC_ERR_INVALID_ARGUMENT, "eval map sizes: NULL argument");
    *total = 0;
    pc_model_info info;
    pc_status st = pc_model_get_info(model, &info);
    if (st) return st;
    size_t sum = 0;
    for (size_t i = 0; i < ds->n_test; i++) {
        int32_t w = info.crop, h = info.crop;
        if (info.tiling.tile > 0) {
            int32_t iw, ih;
            if ((st = pc_image_file_size(ds->test[i].path, &iw, &ih)) != PC_OK) return st;
            if ((st = pc_model_map_size(model, iw, ih, NULL, &w, &h)) != PC_OK)
                return pc_fail_context(st, "%s", ds->test[i].path);
        }
        size_t px;
        if (!pc_mul_size((size_t)w, (size_t)h, &px) || !pc_add_size(sum, px, &sum))
            return pc_fail(PC_ERR_TOO_LARGE, "%s: the test set's maps overflow", ds->root);
        if (widths) widths[i] = w;
        if (heights) heights[i] = h;
    }
    *total = sum;
    return PC_OK;
}
