/*
 * cmd_predict.c - `patchcore predict`: score images with a model; optionally write anomaly maps and
 * overlays (the files themselves: outputs.c).
 */
#include "cli.h"
#include "eval_cli.h"
#include "outputs.h"
#include "report_html.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore predict -m MODEL [options] IMAGES_OR_DIRS...\n"
            "\n"
            "Score every image with MODEL: the image anomaly score (the largest patch score), the decision\n"
            "and the anomalous regions when calibrated; with --maps, the anomaly map (S x S, or the image's size\n"
            "when tiling); with --overlays,\n"
            "the image with the map drawn on it as a heatmap on a fixed colour scale centred on the pixel\n"
            "threshold (a colour means the same value on every image) and the regions outlined in cyan.\n"
            "Files are named after the input's path, so files of the same name in different folders do not\n"
            "collide. Directories are walked recursively. Images that cannot be read, and images whose\n"
            "files cannot be written, are reported on stderr and the others are still scored.\n"
            "\n"
            "options:\n"
            "  -m, --model MODEL      the model file (required)\n"
            "  --json                 one JSON object per line: path, score, normalized, anomalous, map,\n"
            "                         overlay, n_regions and regions (with a pixel threshold), ms\n"
            "  --threshold T          image threshold overriding the model's calibrated one\n"
            "  --pixel-threshold T    pixel threshold overriding the model's (regions, overlays, png16)\n"
            "  --maps DIR             write each anomaly map to DIR/<name>.<ext> (DIR is created)\n"
            "  --map-format F         npy (float32, default), png16 (16-bit grey PNG, value =\n"
            "                         grey / 65535 * full scale) or tiff (float32 TIFF, exact)\n"
            "  --map-full-scale F     the png16 value of grey 65535 (default: twice the pixel threshold)\n"
            "  --overlays DIR         write each overlay to DIR/<name>.png (DIR is created); needs a pixel\n"
            "                         threshold (calibrate the model, or --pixel-threshold)\n"
            "  --overlay-scale S      map units per step of the colour scale (default: the model's pixel\n"
            "                         scale from calibrate; half the pixel threshold for older models)\n"
            "  --overlay-opacity A    heat opacity at and above the threshold, 0..1 (default 0.6)\n"
            "  --roi MASK             region of interest for this run instead of the model's (white = inspect;\n"
            "                         patches outside score 0 and the map is 0 there; docs/roi.md)\n"
            "  --no-roi               inspect the whole image even when the model has a region of interest\n"
            "  --fail-on-anomaly      exit with code 4 when any image is judged anomalous\n"
            "  --report FILE          also write a self-contained HTML report (counts, score histogram,\n"
            "                         sortable table of images with overlays; docs/report.md)\n"
            "  --threads N            threads in all (default: the CPUs this process may use, within its\n"
            "                         cgroup CPU quota; OMP_NUM_THREADS when set)\n"
            "  --jobs N               images in flight at once, the threads split among them (default 0:\n"
            "                         one per 2 threads, so 1 on up to 3 threads; docs/threads.md); results\n"
            "                         are printed in input order\n"
            "  -h, --help             this help\n");
    cli_tiling_options_help(f, false);
    fprintf(f,
            "\n"
            "With a tiled model (fit --tile) the map has the image's size and the score is its maximum.\n"
            "\n"
            "exit codes: 0 ok, 1 error, 2 bad command line, 3 some images failed (unreadable, or a file\n"
            "not written), 4 anomaly found (with --fail-on-anomaly; 3 wins over 4)\n");
}

#define PC_MIN_I(a, b) ((a) < (b) ? (a) : (b))

/* Write the files of one image: DIR/<stem><ext> for the map and DIR/<stem>.png for the overlay. Returns
 * the number that failed (each already reported, naming its path). */
static int write_outputs(const char *maps_dir, cli_map_format fmt, double full_scale, const char *overlays_dir,
                         const pc_overlay_options *ov, const char *stem, const pc_image *img, const float *map,
                         const pc_geometry *geom, char *mappath, char *ovpath, size_t size) {
    int bad = 0;
    if (maps_dir) {
        int32_t mw, mh; /* the map's own size: crop x crop, or the image's when tiling */
        cli_map_dims(geom, &mw, &mh);
        snprintf(mappath, size, "%s/%s%s", maps_dir, stem, cli_map_format_ext(fmt));
        bad += cli_write_map(mappath, map, mw, mh, fmt, full_scale) != 0;
    }
    if (overlays_dir) {
        snprintf(ovpath, size, "%s/%s.png", overlays_dir, stem);
        bad += cli_write_overlay(ovpath, img, map, geom, ov) != 0;
    }
    return bad;
}

enum { MAX_REGIONS = 16 };

/* One image between its work (on a job thread) and its emission (in input order, on the main thread). */
typedef struct pred_slot {
    pc_status st;
    char err[1600]; /* the error message, as cli_error_status would print it */
    pc_image img;
    float *map;
    size_t map_cap; /* floats map holds: grown when a larger map comes, kept otherwise */
    pc_prediction pred;
    pc_geometry geom;
    double ms;
    int32_t n_regions;
    pc_region regions[MAX_REGIONS];
    char mappath[2400], ovpath[2400];
    int bad;
} pred_slot;

/* What the whole run shares: settings (read only while jobs run) and, for emit only, the tallies. */
typedef struct pred_run {
    pc_model *model;
    const cli_paths *inputs;
    char **stems; /* per input, when files are written */
    pred_slot *slots;
    const char *maps_dir, *overlays_dir;
    cli_map_format fmt;
    double full_scale;
    const pc_overlay_options *ov;
    const pc_predict_options *popt; /* tiling overrides, --roi / --no-roi (also for pc_model_map_size) */
    const char *roi_path;
    bool want_map, want_regions, json, calibrated;
    cli_report *report;
    int failed, anomalies;
} pred_run;

static void predict_work(void *user, size_t i, size_t slot) {
    pred_run *r = user;
    pred_slot *sl = &r->slots[slot];
    const char *path = r->inputs->paths[i];
    double t0 = cli_now();
    sl->bad = 0;
    sl->n_regions = 0;
    sl->err[0] = '\0';
    /* Decoded once: the prediction and the overlay use the same pixels. */
    sl->st = pc_image_load(path, &sl->img);
    if (sl->st) {
        snprintf(sl->err, sizeof sl->err, "%s", *pc_last_error() ? pc_last_error() : pc_status_str(sl->st));
        return;
    }
    /* The map's size for this image (crop x crop, or the image's when tiling): the slot's buffer grows
     * when it is too small, and is reused as it is otherwise. */
    int32_t mw = 0, mh = 0;
    size_t need = 0;
    if (r->want_map && (sl->st = pc_model_map_size(r->model, sl->img.width, sl->img.height, r->popt, &mw, &mh)) == PC_OK &&
        (need = (size_t)mw * (size_t)mh) > sl->map_cap) {
        float *grown = realloc(sl->map, need * sizeof *grown);
        if (grown) sl->map = grown, sl->map_cap = need;
        else sl->st = PC_ERR_NO_MEMORY;
    }
    if (sl->st) {
        snprintf(sl->err, sizeof sl->err, "%s: %s", path,
                 sl->st == PC_ERR_NO_MEMORY ? "out of memory for its map" : pc_last_error());
        pc_image_free(&sl->img);
        return;
    }
    sl->st = pc_model_predict_ex(r->model, &sl->img, r->popt, &sl->pred, sl->map, &sl->geom);
    sl->ms = (cli_now() - t0) * 1e3;
    if (sl->st) {
        const char *msg = *pc_last_error() ? pc_last_error() : pc_status_str(sl->st);
        size_t n = strlen(path);
        if (strncmp(msg, path, n) == 0 && msg[n] == ':') /* already names the file */
            snprintf(sl->err, sizeof sl->err, "%s", msg);
        else
            snprintf(sl->err, sizeof sl->err, "%s: %s", path, msg);
        if (r->roi_path && sl->st == PC_ERR_INVALID_ARGUMENT) /* name the mask too */
            snprintf(sl->err + strlen(sl->err), sizeof sl->err - strlen(sl->err), " (--roi %s)", r->roi_path);
        pc_image_free(&sl->img);
        return;
    }
    if (r->want_regions &&
        pc_model_regions(r->model, sl->map, &sl->geom, NAN, sl->regions, MAX_REGIONS, &sl->n_regions) != PC_OK)
        sl->n_regions = 0;
    sl->mappath[0] = sl->ovpath[0] = '\0';
    sl->bad = write_outputs(r->maps_dir, r->fmt, r->full_scale, r->overlays_dir, r->ov, r->stems ? r->stems[i] : "",
                            &sl->img, sl->map, &sl->geom, sl->mappath, sl->ovpath, sizeof sl->mappath);
}

static void predict_emit(void *user, size_t i, size_t slot) {
    pred_run *r = user;
    pred_slot *sl = &r->slots[slot];
    const char *path = r->inputs->paths[i];
    if (sl->st) {
        r->failed++;
        fprintf(stderr, "patchcore: %s\n", sl->err);
        return;
    }
    if (!sl->bad && r->report)
        cli_report_predict_add(r->report, path, &sl->img, &sl->pred, sl->map, &sl->geom,
                               r->want_regions ? sl->n_regions : -1);
    pc_image_free(&sl->img);
    if (sl->bad) {
        r->failed++;
        return;
    }
    const pc_prediction *pred = &sl->pred;
    if (r->calibrated && pred->anomalous) r->anomalies++;
    const char *decision = !r->calibrated ? "-" : pred->anomalous ? "anomalous" : "ok";
    if (r->json) {
        cli_predict_json_fields(stdout, path, pred, r->calibrated, r->maps_dir ? sl->mappath : NULL,
                                r->overlays_dir ? sl->ovpath : NULL, sl->regions, PC_MIN_I(sl->n_regions, MAX_REGIONS),
                                r->want_regions ? sl->n_regions : -1, sl->ms);
        printf("}\n");
    } else {
        printf("%-60s %12.6g %10s %9.1f\n", path, (double)pred->score, decision, sl->ms);
        if (r->want_regions && sl->n_regions) {
            printf("    regions: ");
            cli_report_regions_table(stdout, sl->regions, PC_MIN_I(sl->n_regions, MAX_REGIONS), sl->n_regions);
            printf("\n");
        }
    }
    fflush(stdout);
}

static bool same_dir(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int cmd_predict(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const char *model_path = NULL, *maps_dir = NULL, *overlays_dir = NULL, *report_path = NULL, *v;
    bool json = false, fail_on_anomaly = false, fmt_given = false, opacity_given = false, no_roi = false;
    const char *roi_path = NULL;
    pc_image roi = {0};
    double threshold = NAN, pixel_threshold = NAN, full_scale = NAN, overlay_scale = NAN, opacity = 0.6;
    int32_t threads = 0, jobs = 0;
    cli_map_format fmt = CLI_MAP_NPY;
    cli_paths inputs = {0};
    int rc = CLI_EXIT_USAGE;
    pc_tiling tiling = {0};
    unsigned tiling_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool tmatched;
        if (!cli_parse_tiling_option(argc, argv, &i, &tiling, &tiling_given, &tmatched)) goto out;
        if (tmatched) continue;
        if (cli_match(a, "--model") || strcmp(a, "-m") == 0) {
            if (!cli_take_value(argc, argv, &i, strcmp(a, "-m") ? "--model" : "-m", &model_path)) goto out;
        } else if (cli_match(a, "--maps")) {
            if (!cli_take_value(argc, argv, &i, "--maps", &maps_dir)) goto out;
        } else if (cli_match(a, "--map-format")) {
            if (!cli_take_value(argc, argv, &i, "--map-format", &v)) goto out;
            int f = cli_map_format_from_name(v);
            if (f < 0) {
                cli_error("--map-format: '%s' is not npy, png16 or tiff", v);
                goto out;
            }
            fmt = (cli_map_format)f;
            fmt_given = true;
        } else if (cli_match(a, "--map-full-scale")) {
            if (!cli_take_value(argc, argv, &i, "--map-full-scale", &v) ||
                !cli_parse_double("--map-full-scale", v, 1e-30, 1e30, &full_scale))
                goto out;
        } else if (cli_match(a, "--overlays")) {
            if (!cli_take_value(argc, argv, &i, "--overlays", &overlays_dir)) goto out;
        } else if (cli_match(a, "--overlay-scale")) {
            if (!cli_take_value(argc, argv, &i, "--overlay-scale", &v) ||
                !cli_parse_double("--overlay-scale", v, 1e-30, 1e30, &overlay_scale))
                goto out;
        } else if (cli_match(a, "--overlay-opacity")) {
            if (!cli_take_value(argc, argv, &i, "--overlay-opacity", &v) ||
                !cli_parse_double("--overlay-opacity", v, 0, 1, &opacity))
                goto out;
            opacity_given = true;
        } else if (cli_match(a, "--report")) {
            if (!cli_take_value(argc, argv, &i, "--report", &report_path)) goto out;
        } else if (cli_match(a, "--threshold")) {
            if (!cli_take_value(argc, argv, &i, "--threshold", &v) ||
                !cli_parse_double("--threshold", v, -1e30, 1e30, &threshold))
                goto out;
        } else if (cli_match(a, "--pixel-threshold")) {
            if (!cli_take_value(argc, argv, &i, "--pixel-threshold", &v) ||
                !cli_parse_double("--pixel-threshold", v, -1e30, 1e30, &pixel_threshold))
                goto out;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 1024, &threads))
                goto out;
        } else if (cli_match(a, "--jobs")) {
            if (!cli_take_value(argc, argv, &i, "--jobs", &v) || !cli_parse_int("--jobs", v, 0, 256, &jobs))
                goto out;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--fail-on-anomaly") == 0) {
            fail_on_anomaly = true;
        } else if (cli_match(a, "--roi")) {
            if (!cli_take_value(argc, argv, &i, "--roi", &roi_path)) goto out;
        } else if (strcmp(a, "--no-roi") == 0) {
            no_roi = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error("predict: unknown option '%s' (see patchcore predict --help)", a);
            goto out;
        } else if (cli_collect_images(&inputs, a) != 0) {
            rc = CLI_EXIT_ERROR;
            goto out;
        }
    }
    if (!model_path) {
        cli_error("predict: needs -m MODEL (see patchcore predict --help)");
        goto out;
    }
    if (inputs.n == 0) {
        cli_error("predict: no images given or found");
        goto out;
    }
    if (!maps_dir && (fmt_given || !isnan(full_scale))) {
        cli_error("predict: --map-format and --map-full-scale need --maps DIR");
        goto out;
    }
    if (!overlays_dir && (!isnan(overlay_scale) || opacity_given)) {
        cli_error("predict: --overlay-scale and --overlay-opacity need --overlays DIR");
        goto out;
    }
    if (roi_path && no_roi) {
        cli_error("predict: --roi and --no-roi contradict each other");
        goto out;
    }
    if (cli_parse_only) {
        rc = CLI_EXIT_OK;
        goto out;
    }
    rc = CLI_EXIT_ERROR;
    pc_predict_options popt;
    pc_predict_options_init(&popt);
    popt.ignore_roi = no_roi;
    if (roi_path) {
        if (!cli_load_roi("predict: --roi", roi_path, &roi)) goto out;
        popt.roi = &roi;
    }
    if ((maps_dir && cli_make_dir(maps_dir) != 0) || (overlays_dir && cli_make_dir(overlays_dir) != 0)) goto out;
    if (maps_dir && overlays_dir && fmt == CLI_MAP_PNG16 && same_dir(maps_dir, overlays_dir)) {
        cli_error("predict: png16 maps and overlays would both be <name>.png in %s: give them two directories",
                  maps_dir);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    pc_set_num_threads(threads);
    pc_model *model;
    pc_status st = pc_model_load(model_path, &model);
    if (st) {
        cli_error_status(st, "predict");
        goto out;
    }
    pc_model_info info;
    pc_model_get_info(model, &info);
    if (!isnan(threshold) || !isnan(pixel_threshold))
        pc_model_set_thresholds(model, isnan(threshold) ? info.image_threshold : threshold,
                                isnan(pixel_threshold) ? info.pixel_threshold : pixel_threshold, info.score_scale);
    pc_model_get_info(model, &info);
    /* tiling (docs/tiles.md): the model's, with what was given instead */
    pc_tiling tl = info.tiling;
    if (tiling_given & CLI_TILE_GIVEN) tl.tile = tiling.tile;
    if (tiling_given & CLI_TILE_OVERLAP_GIVEN) tl.overlap = tiling.overlap;
    if (tiling_given & CLI_TILE_SCALE_GIVEN) tl.scale = tiling.scale;
    if (tiling_given & CLI_STITCH_GIVEN) tl.stitch = tiling.stitch;
    if (tiling_given) popt.tiling = &tl;
    {
        int32_t mw, mh;
        if ((st = pc_model_map_size(model, 1024, 1024, &popt, &mw, &mh))) {
            cli_error_status(st, "predict");
            pc_model_free(model);
            goto out;
        }
    }
    /* Everything the files are drawn with is settled here, once: nothing depends on the image. */
    pc_overlay_options ov = {0};
    if ((overlays_dir && !cli_overlay_options(&ov, &info, overlay_scale, opacity, "predict", NULL)) ||
        (maps_dir && fmt == CLI_MAP_PNG16 && !cli_map_full_scale(&full_scale, &info, full_scale, "predict"))) {
        pc_model_free(model);
        goto out;
    }
    const int32_t S = info.crop; /* the first map size; a slot's buffer grows for larger maps (tiling) */
    if (jobs == 0) jobs = pc_default_num_jobs(0);
    if ((size_t)jobs > inputs.n) jobs = (int32_t)inputs.n;
    const int32_t each = pc_job_threads(0, jobs);
    /* The map is needed for the files and, once a pixel threshold is known, for the regions. */
    const bool want_regions = !isnan(info.pixel_threshold);
    const bool want_map = maps_dir || overlays_dir || want_regions || report_path;
    /* Two slots per job: a job starts its next image while the previous one waits to be printed. */
    const size_t window = jobs > 1 ? 2 * (size_t)jobs : 1;
    pred_slot *slots = calloc(window, sizeof *slots);
    char **stems = (maps_dir || overlays_dir) ? calloc(inputs.n, sizeof *stems) : NULL;
    bool oom = !slots || ((maps_dir || overlays_dir) && !stems);
    for (size_t k = 0; k < window && !oom && want_map; k++)
        oom = !(slots[k].map = malloc(sizeof(float) * (slots[k].map_cap = (size_t)S * (size_t)S)));
    cli_names names = {0};
    for (size_t k = 0; stems && !oom && k < inputs.n; k++) { /* the names depend on the order: made up front */
        char stem[1200] = "";
        cli_unique_name(&names, inputs.paths[k], "", stem, sizeof stem);
        oom = !(stems[k] = strdup(stem));
    }
    if (oom) {
        cli_error("predict: out of memory");
        for (size_t k = 0; slots && k < window; k++) free(slots[k].map);
        for (size_t k = 0; stems && k < inputs.n; k++) free(stems[k]);
        free(slots), free(stems);
        cli_names_free(&names);
        pc_model_free(model);
        goto out;
    }
    pred_run run = {.model = model, .inputs = &inputs, .stems = stems, .slots = slots, .maps_dir = maps_dir,
                    .overlays_dir = overlays_dir, .fmt = fmt, .full_scale = full_scale, .ov = &ov, .popt = &popt,
                    .roi_path = roi_path, .want_map = want_map, .want_regions = want_regions, .json = json,
                    .calibrated = !isnan(info.image_threshold)};
    run.report = report_path ? cli_report_predict_begin(model_path, &info, !isnan(threshold)) : NULL;
    cli_report *report = run.report;
    if (!json) printf("%-60s %12s %10s %9s\n", "image", "score", "decision", "ms");
    const double t_start = cli_now();
    if (cli_jobs_ordered(jobs, each, inputs.n, window, predict_work, predict_emit, &run) != 0) {
        cli_error("predict: out of memory");
        run.failed = (int)inputs.n;
    }
    const double secs = cli_now() - t_start;
    const int failed = run.failed, anomalies = run.anomalies;
    /* The throughput: images per second of wall time over the whole loop (decoding, predicting and
     * writing files included). */
    fprintf(stderr, "predict: %zu images in %.2f s, %.2f images/s (%d job%s x %d thread%s)\n", inputs.n, secs,
            secs > 0 ? (double)inputs.n / secs : 0.0, (int)jobs, jobs == 1 ? "" : "s", (int)each, each == 1 ? "" : "s");
    for (size_t k = 0; k < window; k++) free(slots[k].map);
    for (size_t k = 0; stems && k < inputs.n; k++) free(stems[k]);
    free(slots), free(stems);
    int report_failed = report_path && (!report || cli_report_predict_finish(report, report_path, (size_t)failed) != 0);
    cli_names_free(&names);
    pc_model_free(model);
    rc = report_failed ? CLI_EXIT_ERROR : failed ? CLI_EXIT_PARTIAL : (fail_on_anomaly && anomalies) ? CLI_EXIT_ANOMALY : CLI_EXIT_OK;
    if (failed) cli_error("predict: %d of %zu images failed", failed, inputs.n);
out:
    pc_image_free(&roi);
    cli_paths_free(&inputs);
    return rc;
}
