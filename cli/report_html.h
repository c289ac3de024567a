/*
 * report_html.h - the one-file HTML report of `eval --report` and `predict --report` (docs/report.md):
 * metrics, ROC curves and a score histogram as inline SVG, and a sortable table of every image with
 * an overlay thumbnail embedded as a data: URI. No external script, font or stylesheet.
 */
#ifndef PC_REPORT_HTML_H
#define PC_REPORT_HTML_H

#include "cli.h"

/* Thumbnails fit in a box of this many pixels (longer side; smaller images are not enlarged). */
#define CLI_REPORT_THUMB 160
/* The pixel-level ROC is thinned to at most this many points (pc_metric_roc_curve). */
#define CLI_REPORT_PIXEL_ROC_POINTS 400

/* eval: write the whole report for an evaluation that pc_eval_run_detail ran with every array of d
 * filled (predictions, geometries, maps, masks). Thresholds: the model's calibrated ones, or for an
 * uncalibrated model the evaluation's F1-optimal ones (the report says which). mask_rule: the one the
 * evaluation's masks were made with, named in the metrics (#mask-rule). Written atomically.
 * Returns 0, or -1 after printing an error. */
int cli_report_eval(const char *out_path, const char *category, const char *model_path, const pc_model *model,
                    const pc_dataset *ds, const pc_eval_result *r, const pc_eval_detail *d, pc_mask_rule mask_rule);

/* predict: begin a report (info after any --threshold override; threshold_overridden says so), add
 * every image scored (rgb the decoded image, map and geometry from pc_model_predict on it; n_regions -1
 * when not computed), then
 * finish: write it atomically (n_failed images that could not be scored are counted) and free it.
 * finish with out_path NULL only frees. begin returns NULL after printing an error; add and finish
 * return 0 or -1 after printing one. */
typedef struct cli_report cli_report;
cli_report *cli_report_predict_begin(const char *model_path, const pc_model_info *info, bool threshold_overridden);
int cli_report_predict_add(cli_report *rep, const char *path, const pc_image *rgb, const pc_prediction *pred,
                           const float *map, const pc_geometry *geom, int32_t n_regions);
int cli_report_predict_finish(cli_report *rep, const char *out_path, size_t n_failed);

#endif
