/*
 * outputs.h - the per-image files `predict` writes (anomaly maps as .npy, 16-bit PNG or float TIFF;
 * overlays as PNG) and the settings they are drawn with, resolved once from the model. Kept apart from
 * cmd_predict.c so that other outputs (an HTML report) can render the same overlays.
 * docs/visualisation.md ("The command line") documents the rules these functions implement.
 */
#ifndef PC_CLI_OUTPUTS_H
#define PC_CLI_OUTPUTS_H

#include "cli.h"

#include <stdbool.h>

typedef enum cli_map_format { CLI_MAP_NPY = 0, CLI_MAP_PNG16 = 1, CLI_MAP_TIFF = 2 } cli_map_format;

/* "npy", "png16", "tiff" -> format; -1 for anything else. */
int cli_map_format_from_name(const char *name);
/* The file extension of a format, with its dot: ".npy", ".png", ".tiff". */
const char *cli_map_format_ext(cli_map_format f);

/* The 16-bit PNG's full scale: override when it is not NaN, else twice the model's pixel threshold
 * (info->pixel_threshold, which already holds any --pixel-threshold). Returns false after printing an
 * error (prefixed with verb) when neither gives a finite value > 0. */
bool cli_map_full_scale(double *full_scale, const pc_model_info *info, double override, const char *verb);

/* The size of the map a geometry describes: map_width x map_height (crop x crop, or the image's size
 * for a tiled prediction); a geometry with 0 x 0 (filled by hand by older code) means crop x crop. */
void cli_map_dims(const pc_geometry *g, int32_t *width, int32_t *height);

/* Write one width x height map (rows of width floats; npy shape (height, width)) in a format,
 * atomically; 0, or -1 after printing an error naming path. full_scale is used by CLI_MAP_PNG16 only. */
int cli_write_map(const char *path, const float *map, int32_t width, int32_t height, cli_map_format fmt,
                  double full_scale);

/* The overlay's drawing options from the model (info already holding any --pixel-threshold):
 *   threshold = info->pixel_threshold (required: without it, an error saying to run
 *               `patchcore calibrate` or give --pixel-threshold);
 *   scale     = scale_override when not NaN, else info->pixel_scale when it is a number, else
 *               threshold / 2 (a model calibrated before pixel_scale existed; *scale_source says which);
 *   opacity   = opacity (0..1); outlines default (cyan, automatic width).
 * Every value is fixed for the run: nothing depends on the image. Returns false after printing an
 * error (prefixed with verb) when the threshold is missing or the scale is not > 0. scale_source may
 * be NULL; it receives "--overlay-scale", "model" or "threshold/2". */
bool cli_overlay_options(pc_overlay_options *opt, const pc_model_info *info, double scale_override, double opacity,
                         const char *verb, const char **scale_source);

/* Render the overlay of one image: rgb is the decoded image the map was predicted from (pc_image_load
 * + pc_model_predict), map the model's map (g's map_width x map_height), g the geometry pc_model_predict returned. out
 * receives a new RGB image of rgb's size (free with pc_image_free). 0, or -1 after printing an error
 * naming name (the input's path). */
int cli_render_overlay(pc_image *out, const pc_image *rgb, const float *map, const pc_geometry *g,
                       const pc_overlay_options *opt, const char *name);

/* Render and write the overlay to path (PNG, atomically). 0, or -1 after printing an error naming
 * path. */
int cli_write_overlay(const char *path, const pc_image *rgb, const float *map, const pc_geometry *g,
                      const pc_overlay_options *opt);

/* One `predict --json` line's fields, from its '{' through "ms", without the closing brace (the caller
 * closes it, after fields of its own: `patchcore serve` adds the map and overlay it returns):
 *   {"path": P, "score": %.9g[, "normalized": %.6f, "anomalous": B][, "map": M][, "overlay": O]
 *    [, "n_regions": N, "regions": [...]], "ms": %.2f
 * normalized and anomalous when calibrated; map and overlay when not NULL; the regions when
 * n_regions >= 0 (n_shown of them listed: cli_report_regions_json). One writer for both verbs, so the
 * server's numbers are the CLI's byte for byte. */
void cli_predict_json_fields(FILE *f, const char *path, const pc_prediction *pred, bool calibrated,
                             const char *mappath, const char *ovpath, const pc_region *regions, int32_t n_shown,
                             int32_t n_regions, double ms);

/* Create dir and its missing parents (like mkdir -p). 0, or -1 after printing an error naming it
 * (it cannot be created, or exists and is not a directory). */
int cli_make_dir(const char *dir);

#endif
