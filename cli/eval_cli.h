/*
 * eval_cli.h - result writers shared by `eval` and `benchmark` (cmd_eval.c), and the calibration and
 * region-report helpers (calib_cli.c, report.c) that `fit` and `predict` call.
 */
#ifndef PC_EVAL_CLI_H
#define PC_EVAL_CLI_H

#include "cli.h"

#include <stdio.h>

/* Each names the mask rule the pixel metrics were computed with, the model's batch-norm statistics and
 * its backbone precision (JSON "mask_rule", "bn_stats" and "precision", CSV columns of the same names,
 * table lines). */
void cli_eval_write_json(FILE *f, const char *category, const pc_eval_result *r, pc_mask_rule rule, pc_bn_stats bn,
                         pc_precision prec);
void cli_eval_write_table(FILE *f, const char *category, const pc_eval_result *r, pc_mask_rule rule, pc_bn_stats bn,
                         pc_precision prec);
const char *cli_eval_csv_header(void);
void cli_eval_write_csv_row(FILE *f, const char *category, const pc_eval_result *r, pc_mask_rule rule, pc_bn_stats bn,
                         pc_precision prec);
/* Write JSON (csv == 0) or header + row CSV to path; 0 or -1 after printing an error. */
int cli_eval_write_file(const char *path, const char *category, const pc_eval_result *r, pc_mask_rule rule,
                        pc_bn_stats bn, pc_precision prec, int csv);

/* Hook for `fit --holdout FRACTION` (cmd_fit.c): move round(FRACTION * n) of the collected training
 * paths, spread evenly over the sorted list, from all into holdout (the strings move: free both
 * lists with cli_paths_free). Then fit on all and call
 *   pc_model_calibrate(model, PC_CALIB_CONFORMAL, PC_THRESHOLD_DEFAULT_RATE, holdout.paths, holdout.n,
 *                      NULL, NULL, 0, cli_progress_cb, &progress, &report);
 * before pc_model_save. `fit --calibrate DIR`: cli_collect_images(&cal, DIR) and the same call. */
/* Regions of one prediction for `predict` (cmd_predict.c): after pc_model_predict(..., map, &geometry)
 * call pc_model_regions(model, map, &geometry, override_or_NAN, regions, max, &n_total) and print
 * with these. JSON: `"n_regions": N, "regions": [{"box": [x0, y0, x1, y1], "area": A, "peak": P}, ...]`
 * (box half-open in original image pixels, area in map pixels at S x S, sorted by peak). Table: the
 * count then up to three "[x0,y0 WxH a=AREA p=PEAK]". n = min(max, n_total). */
void cli_report_regions_json(FILE *f, const pc_region *r, int32_t n, int32_t n_total);
void cli_report_regions_table(FILE *f, const pc_region *r, int32_t n, int32_t n_total);

void cli_split_holdout(cli_paths *all, double fraction, cli_paths *holdout);

#endif
