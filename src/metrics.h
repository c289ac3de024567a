/*
 * metrics.h - internals shared by metrics.c and calibrate.c: the score sort (floats mapped to
 * order-preserving 32-bit keys, paired with a 32-bit payload, LSD radix sorted) and checks.
 */
#ifndef PC_METRICS_H
#define PC_METRICS_H

#include "internal.h"

#include <string.h>

/* Order-preserving key of a finite float: ascending keys <=> ascending scores; -0 maps like +0. */
static inline uint32_t pc_score_key(float f) {
    if (f == 0.0f) f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The float a key came from (+0 for either zero). */
static inline float pc_score_from_key(uint32_t k) {
    uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Stable LSD radix sort of n entries ascending on their high 32 bits (the low 32 bits are a payload
 * carried along). tmp is n entries of scratch. Returns the buffer that holds the result (a or tmp).
 * Byte passes where every entry has the same digit are skipped. */
uint64_t *pc_sort_pairs(uint64_t *a, uint64_t *tmp, size_t n);

/* PC_ERR_INVALID_ARGUMENT naming `what` and the index when some score is NaN or infinite. */
pc_status pc_check_finite(const float *scores, size_t n, const char *what);

/* Sort n finite scores ascending into out (n floats, -0 written as +0). Uses 16n bytes of scratch. */
pc_status pc_sort_scores(float *out, const float *scores, size_t n);

/* Plain reference versions (src/metrics_ref.c), straight from the definitions and slow (O(P*N),
 * O(T*P)); the tests compare the fast ones against them on many random odd shapes. */
pc_status pc_label_components_ref(int32_t *labels, int32_t *n_components, const uint8_t *mask, int32_t h,
                                  int32_t w);
double pc_metric_auroc_ref(const float *scores, const uint8_t *labels, size_t n);
double pc_metric_aupro_ref(const float *maps, const uint8_t *masks, int32_t n, int32_t h, int32_t w,
                           double fpr_limit);

#endif /* PC_METRICS_H */
