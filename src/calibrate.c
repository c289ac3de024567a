/*
 * calibrate.c - decision thresholds from scores (quantile, mean + k sigma, empirical false-alarm rate,
 * split-conformal default, F1-optimal from labels) and the normalised score in (0,1).
 * Decision rule of the whole library: anomalous when score > threshold. docs/metrics.md explains each
 * choice; the numpy/sklearn equivalences are what tests/test_metrics.c checks.
 */
#include "metrics.h"

#include <math.h>

/* Validate, then sort n scores ascending into a fresh buffer (*sorted, pc_free it). */
static pc_status sorted_copy(float **sorted, const float *scores, size_t n, size_t min_n, const char *what) {
    *sorted = NULL;
    if (!scores) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: NULL scores", what);
    if (n < min_n) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: needs at least %zu scores, got %zu", what, min_n, n);
    pc_status st = pc_check_finite(scores, n, what);
    if (st != PC_OK) return st;
    float *s = pc_malloc(n * sizeof(float));
    if (!s) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %zu scores", what, n);
    st = pc_sort_scores(s, scores, n);
    if (st != PC_OK) {
        pc_free(s);
        return pc_fail_context(st, "%s", what);
    }
    *sorted = s;
    return PC_OK;
}

/* numpy.quantile(x, q) (method 'linear') of ascending sorted x, in float64 exactly as numpy does it:
 * index (n-1)q, previous = floor, gamma = index - previous, lerp a + (b-a)g, or b - (b-a)(1-g) when
 * g >= 0.5. Contraction into an FMA (the build uses -mfma) would round differently from numpy. */
__attribute__((optimize("fp-contract=off"))) static double quantile_sorted(const float *s, size_t n, double q) {
    double vi = (double)(n - 1) * q;
    if (vi >= (double)(n - 1)) return (double)s[n - 1];
    if (vi <= 0) return (double)s[0];
    double prev = floor(vi);
    size_t i = (size_t)prev;
    double g = vi - prev, a = s[i], b = s[i + 1], d = b - a;
    return g >= 0.5 ? b - d * (1 - g) : a + d * g;
}

pc_status pc_threshold_quantile(double *threshold, const float *scores, size_t n, double q) {
    pc_clear_error();
    if (!threshold) return pc_fail(PC_ERR_INVALID_ARGUMENT, "quantile threshold: NULL output");
    *threshold = NAN;
    if (!(q >= 0 && q <= 1)) return pc_fail(PC_ERR_INVALID_ARGUMENT, "quantile threshold: q = %g not in [0,1]", q);
    float *s;
    pc_status st = sorted_copy(&s, scores, n, 1, "quantile threshold");
    if (st != PC_OK) return st;
    *threshold = quantile_sorted(s, n, q);
    pc_free(s);
    return PC_OK;
}

/* Mean and sample standard deviation (ddof = 1) of n >= 2 scores: two passes in double, the mean,
 * then the centred sum of squares (no cancellation). */
static void mean_std(double *mean, double *sd, const float *x, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += x[i];
    double m = sum / (double)n, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - m;
        ss += d * d;
    }
    *mean = m;
    *sd = sqrt(ss / (double)(n - 1));
}

pc_status pc_threshold_mean_std(double *threshold, const float *scores, size_t n, double k) {
    pc_clear_error();
    if (!threshold) return pc_fail(PC_ERR_INVALID_ARGUMENT, "mean+k*std threshold: NULL output");
    *threshold = NAN;
    if (!scores) return pc_fail(PC_ERR_INVALID_ARGUMENT, "mean+k*std threshold: NULL scores");
    if (n < 2) return pc_fail(PC_ERR_INVALID_ARGUMENT, "mean+k*std threshold: needs at least 2 scores, got %zu", n);
    if (!isfinite(k)) return pc_fail(PC_ERR_INVALID_ARGUMENT, "mean+k*std threshold: k = %g", k);
    pc_status st = pc_check_finite(scores, n, "mean+k*std threshold");
    if (st != PC_OK) return st;
    double mean, sd;
    mean_std(&mean, &sd, scores, n);
    *threshold = mean + k * sd;
    return PC_OK;
}

pc_status pc_threshold_false_alarm(double *threshold, const float *scores, size_t n, double rate) {
    pc_clear_error();
    if (!threshold) return pc_fail(PC_ERR_INVALID_ARGUMENT, "false-alarm threshold: NULL output");
    *threshold = NAN;
    if (!(rate >= 0 && rate < 1))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "false-alarm threshold: rate %g not in [0,1)", rate);
    float *s;
    pc_status st = sorted_copy(&s, scores, n, 1, "false-alarm threshold");
    if (st != PC_OK) return st;
    /* k = the most scores allowed strictly above: largest k with k/n <= rate (as evaluated in double). */
    size_t k = (size_t)floor(rate * (double)n);
    while (k > 0 && (double)k / (double)n > rate) k--;
    while (k + 1 < n && (double)(k + 1) / (double)n <= rate) k++;
    /* The (k+1)-th largest: exactly k... or fewer (ties at it are not above) scores exceed it, and any
     * lower threshold has at least k+1 above. */
    *threshold = (double)s[n - 1 - k];
    pc_free(s);
    return PC_OK;
}

pc_status pc_threshold_conformal(double *threshold, double *bound, const float *scores, size_t n, double rate) {
    pc_clear_error();
    if (!threshold) return pc_fail(PC_ERR_INVALID_ARGUMENT, "conformal threshold: NULL output");
    *threshold = NAN;
    if (bound) *bound = NAN;
    if (!(rate > 0 && rate < 1))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "conformal threshold: rate %g not in (0,1)", rate);
    float *s;
    pc_status st = sorted_copy(&s, scores, n, 1, "conformal threshold");
    if (st != PC_OK) return st;
    /* m = largest integer with m <= rate * (n+1); m <= n since rate < 1. */
    double np1 = (double)n + 1.0;
    size_t m = (size_t)floor(rate * np1);
    while (m > 0 && (double)m > rate * np1) m--;
    while (m + 1 <= n && (double)(m + 1) <= rate * np1) m++;
    if (m > n) m = n;
    if (m == 0) { /* too few samples for the rate: the maximum, guaranteeing 1/(n+1) only */
        *threshold = (double)s[n - 1];
        if (bound) *bound = 1.0 / np1;
    } else {
        *threshold = (double)s[n - m]; /* the m-th largest */
        if (bound) *bound = (double)m / np1;
    }
    pc_free(s);
    return PC_OK;
}

pc_status pc_threshold_default(double *threshold, double *bound, const float *scores, size_t n) {
    return pc_threshold_conformal(threshold, bound, scores, n, PC_THRESHOLD_DEFAULT_RATE);
}

pc_status pc_threshold_f1(double *threshold, double *f1, const float *scores, const uint8_t *labels, size_t n) {
    if (!threshold) return pc_fail(PC_ERR_INVALID_ARGUMENT, "F1 threshold: NULL output");
    *threshold = NAN;
    if (f1) *f1 = 0;
    pc_binary_metrics m;
    pc_status st = pc_metric_binary(&m, scores, labels, n);
    if (st != PC_OK) return pc_fail_context(st, "F1 threshold");
    if (m.n_positive == 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "F1 threshold: no positive label");
    *threshold = m.f1_decision_threshold;
    if (f1) *f1 = m.f1_max;
    return PC_OK;
}

pc_status pc_threshold_scale(double *scale, double threshold, const float *nominal, size_t n) {
    pc_clear_error();
    if (!scale) return pc_fail(PC_ERR_INVALID_ARGUMENT, "score scale: NULL output");
    *scale = 1.0;
    if (!isfinite(threshold)) return pc_fail(PC_ERR_INVALID_ARGUMENT, "score scale: threshold %g", threshold);
    float *s;
    pc_status st = sorted_copy(&s, nominal, n, 1, "score scale");
    if (st != PC_OK) return st;
    double spread = threshold - quantile_sorted(s, n, 0.5);
    pc_free(s);
    if (spread > 0 && isfinite(spread)) {
        *scale = spread;
        return PC_OK;
    }
    if (n >= 2) {
        double mean, sd;
        mean_std(&mean, &sd, nominal, n);
        if (sd > 0 && isfinite(sd)) *scale = sd;
    }
    return PC_OK;
}

double pc_threshold_normalize(double score, double threshold, double scale) {
    /* 1/(1+exp(-z)) written so that exp never overflows into inf/inf. */
    double z = log(9.0) * (score - threshold) / scale;
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}
