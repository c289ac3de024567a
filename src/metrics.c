/*
 * metrics.c - evaluation metrics (METHOD.md §7): AUROC and F1-max exactly as sklearn computes them,
 * AUPRO as the MVTec AD evaluation code defines it, and 8-connected component labelling.
 *
 * Every metric is one sweep over the scores sorted once in decreasing order. The sort packs each score
 * into an order-preserving 32-bit key with a 32-bit payload (label, or ground-truth region id) and radix
 * sorts the 64-bit words: O(P), 16 bytes of scratch per score, no float64 copy. Tied scores are
 * consecutive in the sorted order and are consumed as one group, which is exactly how sklearn's
 * _binary_clf_curve and MVTec's compute_pro merge ties. Counts are integers; the AUROC sum is exact
 * (128-bit) until the final division. docs/metrics.md has the definitions.
 */
#include "metrics.h"
#include "maps.h"

#include <math.h>

/* ---------------------------------------------------------------------------------------------
 * Sorting
 * ------------------------------------------------------------------------------------------- */

uint64_t *pc_sort_pairs(uint64_t *a, uint64_t *tmp, size_t n) {
    size_t hist[4][256];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)(a[i] >> 32);
        hist[0][k & 255]++;
        hist[1][(k >> 8) & 255]++;
        hist[2][(k >> 16) & 255]++;
        hist[3][k >> 24]++;
    }
    uint64_t *src = a, *dst = tmp;
    for (int pass = 0; pass < 4; pass++) {
        size_t *h = hist[pass];
        int shift = 32 + 8 * pass;
        if (n == 0 || h[(src[0] >> shift) & 255] == n) continue; /* one digit value: nothing moves */
        size_t off = 0;
        for (int d = 0; d < 256; d++) {
            size_t c = h[d];
            h[d] = off;
            off += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t v = src[i];
            dst[h[(v >> shift) & 255]++] = v;
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

pc_status pc_check_finite(const float *scores, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(scores[i]))
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: score %zu is %g (scores must be finite)", what, i,
                           (double)scores[i]);
    return PC_OK;
}

pc_status pc_sort_scores(float *out, const float *scores, size_t n) {
    size_t bytes;
    if (!pc_mul_size(n, 2 * sizeof(uint64_t), &bytes))
        return pc_fail(PC_ERR_TOO_LARGE, "sort: %zu scores is too many", n);
    uint64_t *buf = pc_malloc(bytes);
    if (!buf) return pc_fail(PC_ERR_NO_MEMORY, "sort: cannot allocate %zu bytes", bytes);
    for (size_t i = 0; i < n; i++) buf[i] = (uint64_t)pc_score_key(scores[i]) << 32;
    uint64_t *s = pc_sort_pairs(buf, buf + n, n);
    for (size_t i = 0; i < n; i++) out[i] = pc_score_from_key((uint32_t)(s[i] >> 32));
    pc_free(buf);
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * AUROC and F1-max
 * ------------------------------------------------------------------------------------------- */

/* Fill pairs with (descending-score key, label bit) and sort them. *sorted points into buf. */
static pc_status sort_labelled(uint64_t **buf, uint64_t **sorted, const float *scores, const uint8_t *labels,
                               size_t n, const char *what) {
    *buf = *sorted = NULL;
    if (!scores || !labels) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: NULL scores or labels", what);
    if (n == 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: no scores", what);
    pc_status st = pc_check_finite(scores, n, what);
    if (st != PC_OK) return st;
    size_t bytes;
    if (!pc_mul_size(n, 2 * sizeof(uint64_t), &bytes))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: %zu scores is too many", what, n);
    uint64_t *b = pc_malloc(bytes);
    if (!b) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes of sort scratch", what, bytes);
    for (size_t i = 0; i < n; i++)
        b[i] = ((uint64_t)~pc_score_key(scores[i]) << 32) | (uint64_t)(labels[i] != 0);
    *buf = b;
    *sorted = pc_sort_pairs(b, b + n, n);
    return PC_OK;
}

/* The sweep over scores sorted decreasingly (pairs from sort_labelled). */
static void binary_sweep(pc_binary_metrics *out, const uint64_t *s, size_t n) {
    int64_t npos = 0;
    for (size_t i = 0; i < n; i++) npos += (int64_t)(s[i] & 1);
    int64_t nneg = (int64_t)n - npos;

    unsigned __int128 area2 = 0; /* 2 * (area under the ROC) * npos * nneg, exact */
    int64_t tp = 0, fp = 0;
    int64_t best_tp = 0, best_fp = 0; /* F1 = 2tp / (tp + fp + npos) */
    bool have_best = false;
    uint32_t best_key = 0;
    double decision = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t key = (uint32_t)(s[i] >> 32);
        int64_t gtp = 0, gn = 0;
        for (; i < n && (uint32_t)(s[i] >> 32) == key; i++, gn++) gtp += (int64_t)(s[i] & 1);
        int64_t gfp = gn - gtp;
        area2 += (unsigned __int128)gfp * (unsigned __int128)(2 * tp + gtp);
        tp += gtp;
        fp += gfp;
        /* F1 at threshold = this group's score (positive when >=). ">=" on ties: the lowest t wins. */
        bool better;
        if (!have_best) better = true;
        else {
            __int128 lhs = (__int128)tp * (best_tp + best_fp + npos);
            __int128 rhs = (__int128)best_tp * (tp + fp + npos);
            better = lhs >= rhs;
        }
        if (better) {
            have_best = true;
            best_tp = tp;
            best_fp = fp;
            best_key = key;
            float t = pc_score_from_key(~key);
            if (i < n) decision = 0.5 * ((double)t + (double)pc_score_from_key(~(uint32_t)(s[i] >> 32)));
            else decision = nextafter((double)t, -INFINITY);
        }
    }
    out->n_positive = npos;
    out->n_negative = nneg;
    out->auroc = (npos > 0 && nneg > 0) ? (double)area2 / (2.0 * (double)npos * (double)nneg) : NAN;
    out->f1_max = npos > 0 ? 2.0 * (double)best_tp / (double)(best_tp + best_fp + npos) : 0.0;
    out->f1_threshold = pc_score_from_key(~best_key);
    out->f1_decision_threshold = decision;
}

pc_status pc_metric_binary(pc_binary_metrics *out, const float *scores, const uint8_t *labels, size_t n) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "metrics: NULL output");
    memset(out, 0, sizeof *out);
    out->auroc = NAN;
    uint64_t *buf, *s;
    pc_status st = sort_labelled(&buf, &s, scores, labels, n, "metrics");
    if (st != PC_OK) return st;
    binary_sweep(out, s, n);
    pc_free(buf);
    return PC_OK;
}

pc_status pc_metric_auroc(double *auroc, const float *scores, const uint8_t *labels, size_t n) {
    if (!auroc) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUROC: NULL output");
    *auroc = NAN;
    pc_binary_metrics m;
    pc_status st = pc_metric_binary(&m, scores, labels, n);
    if (st != PC_OK) return pc_fail_context(st, "AUROC");
    if (m.n_positive == 0 || m.n_negative == 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUROC: only one class present (%lld positive, %lld negative)",
                       (long long)m.n_positive, (long long)m.n_negative);
    *auroc = m.auroc;
    return PC_OK;
}

pc_status pc_metric_f1_max(double *f1_max, float *threshold, const float *scores, const uint8_t *labels,
                           size_t n) {
    if (!f1_max) return pc_fail(PC_ERR_INVALID_ARGUMENT, "F1-max: NULL output");
    *f1_max = 0;
    if (threshold) *threshold = NAN;
    pc_binary_metrics m;
    pc_status st = pc_metric_binary(&m, scores, labels, n);
    if (st != PC_OK) return pc_fail_context(st, "F1-max");
    if (m.n_positive == 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "F1-max: no positive label");
    *f1_max = m.f1_max;
    if (threshold) *threshold = m.f1_threshold;
    return PC_OK;
}

/* The ROC curve, sklearn's roc_curve(drop_intermediate=False) points, thinned to max_points when there
 * are more: a point is kept when FPR + TPR (which grows along the curve) has risen by at least
 * 2 / (max_points - 2) since the last kept point, so the kept points are spread evenly along the curve
 * and at most max_points - 3 interior ones are kept (each adds >= that step, and the sum stays < 2). */
pc_status pc_metric_roc_curve(double *fpr, double *tpr, double *thresholds, size_t max_points, size_t *n_points,
                              const float *scores, const uint8_t *labels, size_t n) {
    pc_clear_error();
    if (!fpr || !tpr || !n_points) return pc_fail(PC_ERR_INVALID_ARGUMENT, "ROC curve: NULL output");
    *n_points = 0;
    if (max_points < 2) return pc_fail(PC_ERR_INVALID_ARGUMENT, "ROC curve: max_points must be >= 2");
    uint64_t *buf, *s;
    pc_status st = sort_labelled(&buf, &s, scores, labels, n, "ROC curve");
    if (st != PC_OK) return st;
    int64_t npos = 0;
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        npos += (int64_t)(s[i] & 1);
        if (i == 0 || (s[i] >> 32) != (s[i - 1] >> 32)) distinct++;
    }
    int64_t nneg = (int64_t)n - npos;
    if (npos == 0 || nneg == 0) {
        pc_free(buf);
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "ROC curve: only one class present (%lld positive, %lld negative)",
                       (long long)npos, (long long)nneg);
    }
    const bool thin = distinct + 1 > max_points;
    const double step = max_points > 2 ? 2.0 / (double)(max_points - 2) : 3.0; /* 3: keep no interior point */
    size_t k = 0;
    fpr[0] = tpr[0] = 0.0;
    if (thresholds) thresholds[0] = INFINITY;
    k = 1;
    double last_sum = 0.0;
    int64_t tp = 0, fp = 0;
    size_t i = 0, group = 0;
    while (i < n) {
        uint32_t key = (uint32_t)(s[i] >> 32);
        for (; i < n && (uint32_t)(s[i] >> 32) == key; i++) {
            if (s[i] & 1) tp++;
            else fp++;
        }
        group++;
        double f = (double)fp / (double)nneg, t = (double)tp / (double)npos;
        if (thin && group < distinct && f + t < last_sum + step) continue;
        fpr[k] = f;
        tpr[k] = t;
        if (thresholds) thresholds[k] = (double)pc_score_from_key(~key);
        last_sum = f + t;
        k++;
    }
    pc_free(buf);
    *n_points = k;
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Connected components (8-connected)
 * ------------------------------------------------------------------------------------------- */

/* Union-find on pixel indices stored as index+1 in lab (0 = background). Every root is the smallest
 * index of its tree, so parent(p) <= p always: the second pass can then relabel in raster order. */
static inline int32_t uf_find(int32_t *lab, int32_t p) {
    while (lab[p] - 1 != p) {
        int32_t q = lab[p] - 1;
        lab[p] = lab[q]; /* path halving */
        p = q;
    }
    return p;
}

static inline void uf_union(int32_t *lab, int32_t p, int32_t q) {
    int32_t rp = uf_find(lab, p), rq = uf_find(lab, q);
    if (rp < rq) lab[rq] = rp + 1;
    else if (rq < rp) lab[rp] = rq + 1;
}

pc_status pc_label_components(int32_t *labels, int32_t *n_components, const uint8_t *mask, int32_t h,
                              int32_t w) {
    if (n_components) *n_components = 0;
    if (!labels || !n_components || !mask)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "label components: NULL argument");
    if (h < 0 || w < 0 || (h > 0 && w > INT32_MAX / h) || (int64_t)h * w >= INT32_MAX)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "label components: bad size %d x %d", h, w);
    /* Pass 1: each foreground pixel joins its already-visited neighbours W, NW, N, NE. */
    for (int32_t y = 0; y < h; y++) {
        for (int32_t x = 0; x < w; x++) {
            int32_t p = y * w + x;
            if (!mask[p]) {
                labels[p] = 0;
                continue;
            }
            labels[p] = p + 1;
            if (x > 0 && mask[p - 1]) uf_union(labels, p, p - 1);
            if (y > 0) {
                int32_t q = p - w;
                if (x > 0 && mask[q - 1]) uf_union(labels, p, q - 1);
                if (mask[q]) uf_union(labels, p, q);
                if (x + 1 < w && mask[q + 1]) uf_union(labels, p, q + 1);
            }
        }
    }
    /* Pass 2, raster order: a root opens the next label; any other pixel's parent is an earlier
     * pixel of the same component, which already holds the final label. */
    int32_t count = 0;
    int32_t npix = h * w;
    for (int32_t p = 0; p < npix; p++) {
        if (!labels[p]) continue;
        int32_t parent = labels[p] - 1;
        labels[p] = parent == p ? ++count : labels[parent];
    }
    *n_components = count;
    return PC_OK;
}

pc_status pc_regions_describe(pc_region *regions, const int32_t *labels, int32_t n_components,
                              const float *map, int32_t h, int32_t w) {
    if (!labels || (n_components > 0 && !regions) || n_components < 0 || h < 0 || w < 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "describe regions: bad argument");
    for (int32_t i = 0; i < n_components; i++) {
        regions[i] = (pc_region){.label = i + 1, .x0 = w, .y0 = h, .x1 = 0, .y1 = 0, .area = 0,
                                 .peak = map ? -INFINITY : 0.0f, .peak_x = -1, .peak_y = -1};
    }
    for (int32_t y = 0; y < h; y++) {
        for (int32_t x = 0; x < w; x++) {
            size_t p = (size_t)y * (size_t)w + (size_t)x;
            int32_t l = labels[p];
            if (l == 0) continue;
            if (l < 0 || l > n_components)
                return pc_fail(PC_ERR_INVALID_ARGUMENT, "describe regions: label %d at (%d,%d) outside 0..%d", l,
                               x, y, n_components);
            pc_region *r = &regions[l - 1];
            r->area++;
            if (x < r->x0) r->x0 = x;
            if (y < r->y0) r->y0 = y;
            if (x + 1 > r->x1) r->x1 = x + 1;
            if (y + 1 > r->y1) r->y1 = y + 1;
            if (map && (r->peak_x < 0 || map[p] > r->peak)) {
                r->peak = map[p];
                r->peak_x = x;
                r->peak_y = y;
            }
        }
    }
    for (int32_t i = 0; i < n_components; i++)
        if (regions[i].area == 0) regions[i].x0 = regions[i].y0 = 0; /* an empty label: an empty box */
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * AUPRO
 * ------------------------------------------------------------------------------------------- */

pc_status pc_metric_aupro(double *aupro, const float *maps, const uint8_t *masks, int32_t n, int32_t h,
                          int32_t w, double fpr_limit) {
    pc_clear_error();
    if (!aupro) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: NULL output");
    *aupro = NAN;
    if (!maps || !masks) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: NULL maps or masks");
    if (n <= 0 || h <= 0 || w <= 0 || (int64_t)h * w >= INT32_MAX)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: bad shape %d x %d x %d", n, h, w);
    size_t hw = (size_t)h * (size_t)w, total;
    if (!pc_mul_size(hw, (size_t)n, &total))
        return pc_fail(PC_ERR_TOO_LARGE, "AUPRO: %d maps of %d x %d is too many pixels", n, h, w);
    int32_t *hs = pc_malloc((size_t)n * sizeof *hs), *ws = pc_malloc((size_t)n * sizeof *ws);
    if (!hs || !ws) {
        pc_free(hs), pc_free(ws);
        return pc_fail(PC_ERR_NO_MEMORY, "AUPRO: out of memory");
    }
    for (int32_t k = 0; k < n; k++) hs[k] = h, ws[k] = w;
    pc_status st = pc_metric_aupro_sizes(aupro, maps, masks, n, hs, ws, fpr_limit);
    pc_free(hs), pc_free(ws);
    return st;
}

/* The maps one after the other, map k hs[k] x ws[k]: each mask is labelled at its own size, and the
 * sweep pools every pixel (maps.h). */
pc_status pc_metric_aupro_sizes(double *aupro, const float *maps, const uint8_t *masks, int32_t n,
                                const int32_t *hs, const int32_t *ws, double fpr_limit) {
    pc_clear_error();
    if (!aupro) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: NULL output");
    *aupro = NAN;
    if (!maps || !masks || !hs || !ws) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: NULL maps, masks or sizes");
    if (n <= 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: bad count %d", n);
    size_t total = 0, max_hw = 0, bytes;
    for (int32_t k = 0; k < n; k++) {
        if (hs[k] <= 0 || ws[k] <= 0 || (int64_t)hs[k] * ws[k] >= INT32_MAX)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: map %d has a bad shape %d x %d", k, hs[k], ws[k]);
        size_t hw = (size_t)hs[k] * (size_t)ws[k];
        if (hw > max_hw) max_hw = hw;
        if (!pc_add_size(total, hw, &total)) return pc_fail(PC_ERR_TOO_LARGE, "AUPRO: %d maps is too many pixels", n);
    }
    if (!(fpr_limit > 0 && fpr_limit <= 1))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: FPR limit %g is not in (0, 1]", fpr_limit);
    if (!pc_mul_size(total, 2 * sizeof(uint64_t), &bytes))
        return pc_fail(PC_ERR_TOO_LARGE, "AUPRO: %d maps is too many pixels", n);
    pc_status st = pc_check_finite(maps, total, "AUPRO");
    if (st != PC_OK) return st;

    /* Region ids must fit the 32-bit payload: at most one region per anomalous pixel. */
    size_t n_anom = 0;
    for (size_t i = 0; i < total; i++) n_anom += masks[i] != 0;
    if (n_anom == 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: the masks have no anomalous pixel");
    if (n_anom == total) return pc_fail(PC_ERR_INVALID_ARGUMENT, "AUPRO: the masks have no nominal pixel");
    if (n_anom >= UINT32_MAX) return pc_fail(PC_ERR_TOO_LARGE, "AUPRO: too many anomalous pixels");

    uint64_t *buf = pc_malloc(bytes);
    int32_t *lab = pc_malloc(max_hw * sizeof(int32_t));
    double *inv_area = pc_malloc((n_anom + 1) * sizeof(double)); /* region id -> 1 / area */
    if (!buf || !lab || !inv_area) {
        pc_free(buf);
        pc_free(lab);
        pc_free(inv_area);
        return pc_fail(PC_ERR_NO_MEMORY, "AUPRO: cannot allocate %zu bytes", bytes + max_hw * 4 + n_anom * 8);
    }
    /* Label each mask; payload = global region id (0 = nominal). inv_area counts areas first. */
    uint32_t n_regions = 0;
    size_t off = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t nc;
        const size_t hw = (size_t)hs[k] * (size_t)ws[k];
        st = pc_label_components(lab, &nc, masks + off, hs[k], ws[k]);
        if (st != PC_OK) break;
        const float *map = maps + off;
        uint64_t *dst = buf + off;
        off += hw;
        for (size_t p = 0; p < hw; p++) {
            uint32_t id = lab[p] ? n_regions + (uint32_t)lab[p] : 0;
            dst[p] = ((uint64_t)~pc_score_key(map[p]) << 32) | id;
        }
        for (int32_t c = 1; c <= nc; c++) inv_area[n_regions + (uint32_t)c] = 0;
        for (size_t p = 0; p < hw; p++)
            if (lab[p]) inv_area[n_regions + (uint32_t)lab[p]] += 1.0;
        n_regions += (uint32_t)nc;
    }
    pc_free(lab);
    if (st != PC_OK) {
        pc_free(buf);
        pc_free(inv_area);
        return pc_fail_context(st, "AUPRO");
    }
    for (uint32_t r = 1; r <= n_regions; r++) inv_area[r] = 1.0 / inv_area[r];

    const uint64_t *s = pc_sort_pairs(buf, buf + total, total);
    const double n_ok = (double)(total - n_anom), inv_regions = 1.0 / (double)n_regions;
    size_t fp = 0;
    double pro_sum = 0; /* sum over regions of (pixels above t) / area */
    double x0 = 0, y0 = 0, area = 0;
    size_t i = 0;
    while (i < total) {
        uint32_t key = (uint32_t)(s[i] >> 32);
        for (; i < total && (uint32_t)(s[i] >> 32) == key; i++) {
            uint32_t id = (uint32_t)s[i];
            if (id) pro_sum += inv_area[id];
            else fp++;
        }
        double x1 = (double)fp / n_ok, y1 = fmin(pro_sum * inv_regions, 1.0);
        if (x1 > fpr_limit) { /* the segment crosses the limit: interpolate there */
            double yl = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0);
            area += 0.5 * (yl + y0) * (fpr_limit - x0);
            x0 = fpr_limit;
            break;
        }
        area += 0.5 * (y1 + y0) * (x1 - x0);
        x0 = x1;
        y0 = y1;
    }
    /* All pixels consumed with x0 <= limit means the curve ends at (1,1) with limit = 1. */
    pc_free(buf);
    pc_free(inv_area);
    *aupro = area / fpr_limit;
    return PC_OK;
}
