/*
 * report.c - how `predict` prints anomalous regions (pc_model_regions): a JSON array for the JSON-lines
 * output and a compact table cell. Called from cmd_predict.c; see cli/eval_cli.h.
 */
#include "cli.h"
#include "eval_cli.h"

#include <stdio.h>

void cli_report_regions_json(FILE *f, const pc_region *r, int32_t n, int32_t n_total) {
    fprintf(f, "\"n_regions\": %d, \"regions\": [", (int)n_total);
    for (int32_t i = 0; i < n; i++)
        fprintf(f, "%s{\"box\": [%d, %d, %d, %d], \"area\": %lld, \"peak\": %.9g}", i ? ", " : "", (int)r[i].x0,
                (int)r[i].y0, (int)r[i].x1, (int)r[i].y1, (long long)r[i].area, (double)r[i].peak);
    fputc(']', f);
}

void cli_report_regions_table(FILE *f, const pc_region *r, int32_t n, int32_t n_total) {
    fprintf(f, "%d", (int)n_total);
    for (int32_t i = 0; i < n && i < 3; i++)
        fprintf(f, " [%d,%d %dx%d a=%lld p=%.4g]", (int)r[i].x0, (int)r[i].y0, (int)(r[i].x1 - r[i].x0),
                (int)(r[i].y1 - r[i].y0), (long long)r[i].area, (double)r[i].peak);
    if (n_total > 3) fprintf(f, " ...");
}
