/*
 * cmd_update.c - `patchcore update -m MODEL [-o NEW] IMAGES...`: add good images to a model's memory
 * bank without refitting (pc_model_update, docs/update.md), optionally recalibrate, and write the model
 * atomically.
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: patchcore update -m MODEL [options] GOOD_IMAGES_OR_DIRS...\n"
            "\n"
            "Add images of good parts (a new lot, a new lighting condition) to a model's memory bank\n"
            "without recomputing the features of the images it was fitted on: the new images' patch\n"
            "features are computed with the model's own backbone and settings and chosen by the greedy\n"
            "coreset continued from the bank (docs/update.md). The model file is rewritten atomically.\n"
            "Thresholds calibrated before are kept but flagged stale (patchcore info shows it) unless\n"
            "--calibrate recalibrates them.\n"
            "\n"
            "rules (--rule):\n"
            "  auto     radius for a greedy-coreset model that records its coverage radius, all for\n"
            "           sampler none, ratio otherwise (default)\n"
            "  radius   add entries until no new patch is farther from the bank than the model's\n"
            "           coverage radius: images like those already fitted add nothing\n"
            "  ratio    add the model's coreset ratio of the new patches, as a fit would keep\n"
            "  all      add every new patch\n"
            "\n"
            "options:\n"
            "  -m, --model FILE      the model (required); rewritten in place unless -o\n"
            "  -o, --out FILE        write the updated model here instead\n"
            "  --rule R              auto|radius|ratio|all (default auto)\n"
            "  --max-add N           add at most N entries (default: no limit)\n"
            "  --calibrate PATH      recalibrate the thresholds (conformal, rate 0.01) on these held-out\n"
            "                        good images (file or directory; repeatable); for another method run\n"
            "                        patchcore calibrate afterwards\n"
            "  --batch N             images per backbone call (default 8)\n"
            "  --jobs N              batches in flight (default: as fit)\n"
            "  --max-memory SIZE     memory budget for the new features, as fit (default unlimited)\n"
            "  --threads N           threads (default: the CPUs this process may use)\n"
            "  --json                print the summary as one JSON object\n"
            "  --no-progress         no progress line on stderr\n"
            "  -h, --help            this help\n"
            "\n"
            "exit codes: 0 ok, 1 failure (the model file is untouched), 2 usage, 3 some images could not\n"
            "be used (the others were added)\n");
}

/* a JSON number, or null for NaN */
static void json_num(const char *key, double v) {
    if (isnan(v)) printf(", \"%s\": null", key);
    else printf(", \"%s\": %.9g", key, v);
}


int cmd_update(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help(stdout);
        return CLI_EXIT_OK;
    }
    const char *model_path = NULL, *out = NULL, *v;
    pc_update_options uo;
    pc_update_options_init(&uo);
    int32_t threads = 0, tmp;
    bool progress = true, json = false;
    cli_paths images = {0}, cal = {0};
    pc_model *model = NULL;
    int rc = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-m") == 0 || cli_match(a, "--model")) {
            if (!cli_take_value(argc, argv, &i, a[1] == 'm' ? "-m" : "--model", &model_path)) goto out;
        } else if (strcmp(a, "-o") == 0 || cli_match(a, "--out")) {
            if (!cli_take_value(argc, argv, &i, a[1] == 'o' ? "-o" : "--out", &out)) goto out;
        } else if (cli_match(a, "--rule")) {
            if (!cli_take_value(argc, argv, &i, "--rule", &v)) goto out;
            int r = pc_update_rule_from_name(v);
            if (r < 0) {
                cli_error("--rule: unknown '%s' (auto, radius, ratio, all)", v);
                goto out;
            }
            uo.rule = (pc_update_rule)r;
        } else if (cli_match(a, "--max-add")) {
            if (!cli_take_value(argc, argv, &i, "--max-add", &v) || !cli_parse_int("--max-add", v, 1, 2147483647L, &tmp))
                goto out;
            uo.max_add = tmp;
        } else if (cli_match(a, "--calibrate")) {
            if (!cli_take_value(argc, argv, &i, "--calibrate", &v)) goto out;
            if (cli_collect_images(&cal, v) != 0) {
                rc = CLI_EXIT_ERROR;
                goto out;
            }
        } else if (cli_match(a, "--batch")) {
            if (!cli_take_value(argc, argv, &i, "--batch", &v) || !cli_parse_int("--batch", v, 1, 256, &uo.batch_size))
                goto out;
        } else if (cli_match(a, "--jobs")) {
            if (!cli_take_value(argc, argv, &i, "--jobs", &v) || !cli_parse_int("--jobs", v, 0, 256, &uo.jobs)) goto out;
        } else if (cli_match(a, "--max-memory")) {
            if (!cli_take_value(argc, argv, &i, "--max-memory", &v) || !cli_parse_size("--max-memory", v, &uo.max_memory))
                goto out;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 4096, &threads))
                goto out;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--no-progress") == 0 || strcmp(a, "--quiet") == 0) {
            progress = false;
        } else if (a[0] == '-' && a[1]) {
            cli_error("update: unknown option '%s' (see patchcore update --help)", a);
            goto out;
        } else if (cli_collect_images(&images, a) != 0) {
            rc = CLI_EXIT_ERROR;
            goto out;
        }
    }
    if (!model_path || images.n == 0) {
        cli_error("update: needs -m MODEL and good images (see patchcore update --help)");
        goto out;
    }
    if (cli_parse_only) {
        rc = CLI_EXIT_OK;
        goto out;
    }
    rc = CLI_EXIT_ERROR;
    pc_set_num_threads(threads);
    pc_status st = pc_model_load(model_path, &model);
    if (st) {
        cli_error_status(st, "update");
        goto out;
    }
    cli_skipped sk = {0};
    cli_progress pr;
    cli_progress_init(&pr, progress);
    uo.progress = cli_progress_cb, uo.progress_user = &pr;
    uo.on_image_error = cli_on_image_error, uo.on_image_error_user = &sk;
    pc_update_report rep;
    const double t0 = cli_now();
    st = pc_model_update(model, &uo, (const char *const *)images.paths, images.n, &rep);
    cli_progress_done(&pr);
    if (st) {
        cli_error_status(st, "update");
        goto out;
    }
    const double t_update = cli_now() - t0;
    pc_calibration c = {0};
    if (cal.n) {
        cli_progress_init(&pr, progress);
        st = pc_model_calibrate(model, PC_CALIB_CONFORMAL, PC_THRESHOLD_DEFAULT_RATE, (const char *const *)cal.paths,
                                cal.n, NULL, NULL, 0, cli_progress_cb, &pr, &c);
        cli_progress_done(&pr);
        if (st) {
            cli_error_status(st, "update: --calibrate");
            goto out;
        }
    }
    const char *dst = out ? out : model_path;
    if ((st = pc_model_save(model, dst)) != PC_OK) {
        cli_error_status(st, "update");
        goto out;
    }
    pc_model_info info;
    pc_model_get_info(model, &info);
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, dst);
        printf(", \"rule\": \"%s\", \"images\": %d, \"skipped\": %d, \"patches\": %lld, \"added\": %lld, "
               "\"bank_size\": %lld",
               pc_update_rule_name(rep.rule), (int)rep.n_images, sk.count, (long long)rep.n_patches,
               (long long)rep.n_added, (long long)rep.bank_size);
        json_num("radius_before", rep.radius_before);
        json_num("radius_new", rep.radius_new);
        json_num("radius_after", rep.radius_after);
        if (cal.n) {
            json_num("image_threshold", c.image_threshold);
            json_num("pixel_threshold", c.pixel_threshold);
        }
        printf(", \"thresholds_stale\": %s, \"seconds\": %.3f}\n", info.thresholds_stale ? "true" : "false", t_update);
    } else {
        printf("added %lld of %lld patches from %d images (rule %s); bank %lld entries\n", (long long)rep.n_added,
               (long long)rep.n_patches, (int)rep.n_images, pc_update_rule_name(rep.rule), (long long)rep.bank_size);
        if (!isnan(rep.radius_new))
            printf("farthest new patch from the bank: %.6g (coverage radius %.6g before, %.6g after)\n", rep.radius_new,
                   rep.radius_before, rep.radius_after);
        if (cal.n)
            printf("recalibrated on %zu good images: image threshold %.9g, pixel threshold %.9g\n", c.n_good,
                   c.image_threshold, c.pixel_threshold);
        else if (info.thresholds_stale)
            printf("thresholds are stale: recalibrate (patchcore calibrate, or update --calibrate)\n");
        printf("written to %s in %.1f s\n", dst, t_update);
    }
    rc = sk.count ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
out:
    pc_model_free(model);
    cli_paths_free(&images);
    cli_paths_free(&cal);
    return rc;
}
