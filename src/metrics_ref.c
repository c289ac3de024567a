/*
 * metrics_ref.c - plain, slow reference versions of the metrics kernels in metrics.c, written straight
 * from the definitions for the tests to compare against: flood-fill labelling, pairwise (Mann-Whitney)
 * AUROC, and AUPRO recomputing FPR and PRO from scratch at every distinct threshold. Not for use on
 * real-size data (quadratic).
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

/* Flood fill with an explicit stack, in raster order of seeds: numbering = first pixel order. */
pc_status pc_label_components_ref(int32_t *labels, int32_t *n_components, const uint8_t *mask, int32_t h,
                                  int32_t w) {
    size_t np = (size_t)h * (size_t)w;
    int32_t *stack = pc_malloc(np * sizeof *stack + 1);
    if (!stack) return pc_fail(PC_ERR_NO_MEMORY, "label (ref): cannot allocate");
    for (size_t p = 0; p < np; p++) labels[p] = 0;
    int32_t count = 0;
    for (int32_t p0 = 0; p0 < (int32_t)np; p0++) {
        if (!mask[p0] || labels[p0]) continue;
        labels[p0] = ++count;
        size_t top = 0;
        stack[top++] = p0;
        while (top) {
            int32_t p = stack[--top], y = p / w, x = p % w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int32_t yy = y + dy, xx = x + dx;
                    if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                    int32_t q = yy * w + xx;
                    if (mask[q] && !labels[q]) {
                        labels[q] = count;
                        stack[top++] = q;
                    }
                }
        }
    }
    pc_free(stack);
    *n_components = count;
    return PC_OK;
}

/* P(s+ > s-) + P(s+ = s-)/2 over all positive/negative pairs. */
double pc_metric_auroc_ref(const float *scores, const uint8_t *labels, size_t n) {
    double wins = 0, pairs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!labels[i]) continue;
        for (size_t j = 0; j < n; j++) {
            if (labels[j]) continue;
            pairs += 1;
            wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
        }
    }
    return pairs > 0 ? wins / pairs : NAN;
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

double pc_metric_aupro_ref(const float *maps, const uint8_t *masks, int32_t n, int32_t h, int32_t w,
                           double fpr_limit) {
    size_t hw = (size_t)h * w, total = hw * (size_t)n;
    int32_t *lab = malloc(total * sizeof *lab);
    float *thr = malloc(total * sizeof *thr);
    int32_t *nc = malloc((size_t)n * sizeof *nc);
    int32_t n_regions = 0;
    for (int32_t k = 0; k < n; k++) {
        pc_label_components_ref(lab + k * hw, &nc[k], masks + k * hw, h, w);
        n_regions += nc[k];
    }
    for (size_t i = 0; i < total; i++) thr[i] = maps[i] == 0 ? 0.0f : maps[i];
    qsort(thr, total, sizeof *thr, cmp_desc);
    double x0 = 0, y0 = 0, area = 0;
    for (size_t i = 0; i <= total; i++) {
        if (i < total && i > 0 && thr[i] == thr[i - 1]) continue;
        double x1 = 1, y1 = 1; /* after the last threshold: the end point (1,1) */
        if (i < total) {
            float t = thr[i];
            size_t fp = 0, nok = 0;
            double pro = 0;
            for (int32_t k = 0; k < n; k++) {
                for (int32_t c = 1; c <= nc[k]; c++) {
                    size_t above = 0, size = 0;
                    for (size_t p = 0; p < hw; p++)
                        if (lab[k * hw + p] == c) size++, above += maps[k * hw + p] >= t;
                    pro += (double)above / (double)size;
                }
                for (size_t p = 0; p < hw; p++)
                    if (!lab[k * hw + p]) nok++, fp += maps[k * hw + p] >= t;
            }
            x1 = (double)fp / (double)nok;
            y1 = pro / n_regions;
        }
        if (x1 > fpr_limit) {
            area += 0.5 * (y0 + y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)) * (fpr_limit - x0);
            break;
        }
        area += 0.5 * (y0 + y1) * (x1 - x0);
        x0 = x1;
        y0 = y1;
    }
    free(lab);
    free(thr);
    free(nc);
    return area / fpr_limit;
}
