/*
 * outputs.c - the per-image files of `predict`: anomaly maps (.npy, 16-bit PNG, float TIFF) and
 * overlays (PNG), with the fixed colour scale resolved once from the model. See outputs.h and
 * docs/visualisation.md ("The command line").
 */
#include "outputs.h"
#include "eval_cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_map_format_from_name(const char *name) {
    if (!strcmp(name, "npy")) return CLI_MAP_NPY;
    if (!strcmp(name, "png16")) return CLI_MAP_PNG16;
    if (!strcmp(name, "tiff")) return CLI_MAP_TIFF;
    return -1;
}

const char *cli_map_format_ext(cli_map_format f) {
    switch (f) {
    case CLI_MAP_PNG16: return ".png";
    case CLI_MAP_TIFF: return ".tiff";
    default: return ".npy";
    }
}

bool cli_map_full_scale(double *full_scale, const pc_model_info *info, double override, const char *verb) {
    double f = !isnan(override) ? override : 2.0 * info->pixel_threshold;
    if (isnan(f)) {
        cli_error("%s: --map-format png16 needs a full scale: the model has no pixel threshold (run `patchcore "
                  "calibrate`, or give --pixel-threshold T or --map-full-scale F)", verb);
        return false;
    }
    if (!(f > 0) || !isfinite(f)) {
        cli_error("%s: the 16-bit PNG full scale (%s) is %g; it must be > 0 (give --map-full-scale F)", verb,
                  !isnan(override) ? "--map-full-scale" : "twice the pixel threshold", f);
        return false;
    }
    *full_scale = f;
    return true;
}

void cli_map_dims(const pc_geometry *g, int32_t *width, int32_t *height) {
    if (g->map_width == 0 && g->map_height == 0) *width = *height = g->crop_size;
    else *width = g->map_width, *height = g->map_height;
}

int cli_write_map(const char *path, const float *map, int32_t width, int32_t height, cli_map_format fmt,
                  double full_scale) {
    pc_status st;
    switch (fmt) {
    case CLI_MAP_PNG16: st = pc_map_write_png16(path, map, height, width, full_scale); break;
    case CLI_MAP_TIFF: st = pc_map_write_tiff(path, map, height, width); break;
    default: {
        int64_t shape[2] = {height, width};
        return cli_write_npy_f32(path, map, 2, shape); /* prints its own error naming path */
    }
    }
    if (st != PC_OK) {
        cli_error_status(st, NULL); /* the library's message names the path */
        return -1;
    }
    return 0;
}

bool cli_overlay_options(pc_overlay_options *opt, const pc_model_info *info, double scale_override, double opacity,
                         const char *verb, const char **scale_source) {
    double t = info->pixel_threshold;
    if (!isfinite(t)) {
        cli_error("%s: overlays need a pixel threshold and the model has none: run `patchcore calibrate` on "
                  "good images first, or give --pixel-threshold T", verb);
        return false;
    }
    const char *src;
    double scale;
    if (!isnan(scale_override)) {
        scale = scale_override;
        src = "--overlay-scale";
    } else if (!isnan(info->pixel_scale)) {
        scale = info->pixel_scale;
        src = "model";
    } else {
        /* Models calibrated before pixel_scale existed: assume the good pixels' median at half the
         * threshold (on the repo's reference maps it is about 0.42 of it), a fixed choice. */
        scale = t / 2.0;
        src = "threshold/2";
    }
    if (!(scale > 0) || !isfinite(scale)) {
        cli_error("%s: the overlay scale (%s) is %g; it must be > 0 (give --overlay-scale S)", verb, src, scale);
        return false;
    }
    pc_overlay_options_init(opt, t, scale);
    opt->opacity = opacity;
    if (scale_source) *scale_source = src;
    return true;
}

int cli_render_overlay(pc_image *out, const pc_image *rgb, const float *map, const pc_geometry *g,
                       const pc_overlay_options *opt, const char *name) {
    pc_status st = pc_overlay_render(out, rgb, map, g, opt);
    if (st != PC_OK) {
        cli_error_status(st, name);
        return -1;
    }
    return 0;
}

int cli_write_overlay(const char *path, const pc_image *rgb, const float *map, const pc_geometry *g,
                      const pc_overlay_options *opt) {
    pc_image ov = {0};
    if (cli_render_overlay(&ov, rgb, map, g, opt, path) != 0) return -1;
    pc_status st = pc_image_write_png(path, &ov);
    pc_image_free(&ov);
    if (st != PC_OK) {
        cli_error_status(st, NULL); /* names the path */
        return -1;
    }
    return 0;
}

void cli_predict_json_fields(FILE *f, const char *path, const pc_prediction *pred, bool calibrated,
                             const char *mappath, const char *ovpath, const pc_region *regions, int32_t n_shown,
                             int32_t n_regions, double ms) {
    fprintf(f, "{\"path\": ");
    cli_json_string(f, path);
    fprintf(f, ", \"score\": %.9g", (double)pred->score);
    if (calibrated)
        fprintf(f, ", \"normalized\": %.6f, \"anomalous\": %s", pred->normalized, pred->anomalous ? "true" : "false");
    if (mappath) {
        fprintf(f, ", \"map\": ");
        cli_json_string(f, mappath);
    }
    if (ovpath) {
        fprintf(f, ", \"overlay\": ");
        cli_json_string(f, ovpath);
    }
    if (n_regions >= 0) {
        fprintf(f, ", ");
        cli_report_regions_json(f, regions, n_shown, n_regions);
    }
    fprintf(f, ", \"ms\": %.2f", ms);
}

int cli_make_dir(const char *dir) {
    char buf[4096];
    if (!dir[0]) {
        cli_error("an output directory must not be empty");
        return -1;
    }
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        cli_error("%s: path too long", dir);
        return -1;
    }
    /* Create each missing ancestor, then dir itself; EEXIST is fine as long as the end is a directory. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            cli_error("%s: cannot create: %s", buf, strerror(errno));
            return -1;
        }
        *p = c;
        if (c == '\0') break;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        cli_error("%s: cannot create: %s", dir, stat(dir, &sb) != 0 ? strerror(errno) : "exists and is not a directory");
        return -1;
    }
    return 0;
}
