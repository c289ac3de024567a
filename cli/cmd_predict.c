/*
 * cmd_predict.c - `patchcore predict`: score images with a model; optionally write anomaly maps.
 */
#include "cli.h"
#include "eval_cli.h"
#include "report_html.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore predict -m MODEL [options] IMAGES_OR_DIRS...\n"
            "\n"
            "Score every image with MODEL: the image anomaly score (the largest patch score) and, with\n"
            "--maps, the S x S anomaly map as float32 .npy (named after the input's path, so files of the\n"
            "same name in different folders do not collide). Directories are walked recursively.\n"
            "Images that cannot be read are reported on stderr and the others are still scored.\n"
            "\n"
            "options:\n"
            "  -m, --model MODEL   the model file (required)\n"
            "  --maps DIR          write each anomaly map to DIR/<name>.npy (DIR is created)\n"
            "  --json              one JSON object per line: path, score, normalized, anomalous, map,\n"
            "                      regions (when calibrated), ms\n"
            "  --threshold T       image threshold overriding the model's calibrated one\n"
            "  --fail-on-anomaly   exit with code 4 when any image is judged anomalous\n"
            "  --report FILE       also write a self-contained HTML report (counts, score histogram,\n"
            "                      sortable table of images with overlays; docs/report.md)\n"
            "  --threads N         threads (default: all cores)\n"
            "  -h, --help          this help\n"
            "\n"
            "exit codes: 0 ok, 1 error, 2 bad command line, 3 some images failed, 4 anomaly found\n"
            "(with --fail-on-anomaly; 3 wins over 4)\n");
}

#define PC_MIN_I(a, b) ((a) < (b) ? (a) : (b))

int cmd_predict(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const char *model_path = NULL, *maps_dir = NULL, *report_path = NULL, *v;
    bool json = false, fail_on_anomaly = false;
    double threshold = NAN;
    int32_t threads = 0;
    cli_paths inputs = {0};
    int rc = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_match(a, "--model") || strcmp(a, "-m") == 0) {
            if (!cli_take_value(argc, argv, &i, strcmp(a, "-m") ? "--model" : "-m", &model_path)) goto out;
        } else if (cli_match(a, "--maps")) {
            if (!cli_take_value(argc, argv, &i, "--maps", &maps_dir)) goto out;
        } else if (cli_match(a, "--report")) {
            if (!cli_take_value(argc, argv, &i, "--report", &report_path)) goto out;
        } else if (cli_match(a, "--threshold")) {
            if (!cli_take_value(argc, argv, &i, "--threshold", &v) ||
                !cli_parse_double("--threshold", v, -1e30, 1e30, &threshold))
                goto out;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 1024, &threads))
                goto out;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--fail-on-anomaly") == 0) {
            fail_on_anomaly = true;
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
    if (cli_parse_only) {
        rc = CLI_EXIT_OK;
        goto out;
    }
    rc = CLI_EXIT_ERROR;
    if (maps_dir && mkdir(maps_dir, 0777) != 0 && errno != EEXIST) {
        cli_error("%s: cannot create: %s", maps_dir, strerror(errno));
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
    if (!isnan(threshold))
        pc_model_set_thresholds(model, threshold, info.pixel_threshold, isnan(info.score_scale) ? NAN : info.score_scale);
    pc_model_get_info(model, &info);
    const int32_t S = info.crop;
    /* The map is needed for the files and, once a pixel threshold is calibrated, for the regions. */
    const bool want_regions = !isnan(info.pixel_threshold);
    float *map = (maps_dir || want_regions || report_path) ? malloc(sizeof(float) * (size_t)S * (size_t)S) : NULL;
    enum { MAX_REGIONS = 16 };
    pc_region regions[MAX_REGIONS];
    cli_names names = {0};
    int failed = 0, anomalies = 0;
    cli_report *report = report_path ? cli_report_predict_begin(model_path, &info, !isnan(threshold)) : NULL;
    if (!json) printf("%-60s %12s %10s %9s\n", "image", "score", "decision", "ms");
    for (size_t i = 0; i < inputs.n; i++) {
        const char *path = inputs.paths[i];
        pc_prediction pred;
        double t0 = cli_now();
        pc_geometry geom;
        st = pc_model_predict_file(model, path, &pred, map, &geom);
        double ms = (cli_now() - t0) * 1e3;
        if (st) {
            failed++;
            cli_error_status(st, NULL);
            continue;
        }
        int32_t n_regions = 0;
        if (want_regions && pc_model_regions(model, map, &geom, NAN, regions, MAX_REGIONS, &n_regions) != PC_OK)
            n_regions = 0;
        char mapname[1200] = "", mappath[2400] = "";
        if (maps_dir) {
            cli_unique_name(&names, path, ".npy", mapname, sizeof mapname);
            snprintf(mappath, sizeof mappath, "%s/%s", maps_dir, mapname);
            int64_t shape[2] = {S, S};
            if (cli_write_npy_f32(mappath, map, 2, shape) != 0) {
                failed++;
                continue;
            }
        }
        if (report) cli_report_predict_add(report, path, &pred, map, &geom, want_regions ? n_regions : -1);
        bool calibrated = !isnan(info.image_threshold);
        if (calibrated && pred.anomalous) anomalies++;
        const char *decision = !calibrated ? "-" : pred.anomalous ? "anomalous" : "ok";
        if (json) {
            printf("{\"path\": ");
            cli_json_string(stdout, path);
            printf(", \"score\": %.9g", (double)pred.score);
            if (calibrated)
                printf(", \"normalized\": %.6f, \"anomalous\": %s", pred.normalized, pred.anomalous ? "true" : "false");
            if (maps_dir) {
                printf(", \"map\": ");
                cli_json_string(stdout, mappath);
            }
            if (want_regions) {
                printf(", ");
                cli_report_regions_json(stdout, regions, PC_MIN_I(n_regions, MAX_REGIONS), n_regions);
            }
            printf(", \"ms\": %.2f}\n", ms);
        } else {
            printf("%-60s %12.6g %10s %9.1f\n", path, (double)pred.score, decision, ms);
            if (want_regions && n_regions) {
                printf("    regions: ");
                cli_report_regions_table(stdout, regions, PC_MIN_I(n_regions, MAX_REGIONS), n_regions);
                printf("\n");
            }
        }
        fflush(stdout);
    }
    int report_failed = report_path && (!report || cli_report_predict_finish(report, report_path, (size_t)failed) != 0);
    free(map);
    cli_names_free(&names);
    pc_model_free(model);
    rc = report_failed ? CLI_EXIT_ERROR : failed ? CLI_EXIT_PARTIAL : (fail_on_anomaly && anomalies) ? CLI_EXIT_ANOMALY : CLI_EXIT_OK;
    if (failed) cli_error("predict: %d of %zu images failed", failed, inputs.n);
out:
    cli_paths_free(&inputs);
    return rc;
}
