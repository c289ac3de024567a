/*
 * cmd_calibrate.c - `patchcore calibrate -m MODEL [--method M] [--rate R|--quantile Q|--k K] GOOD...
 * [--defective DIR... --masks DIR [--mask-rule full|half]]`: set a model's image and pixel thresholds (pc_model_calibrate) and
 * store them in the model file. Also cli_split_holdout, the helper `fit --holdout` uses.
 */
#include "cli.h"
#include "eval_cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: patchcore calibrate -m MODEL [options] GOOD_IMAGES_OR_DIRS...\n"
            "\n"
            "Set the model's image threshold (on the image score) and pixel threshold (on the anomaly map)\n"
            "from images of good parts not used for fitting, and store them in the model file. With\n"
            "--defective and --masks, F1-optimal thresholds instead. Methods (docs/evaluation.md):\n"
            "  conformal    split-conformal: a new good image is flagged with probability <= RATE (default)\n"
            "  quantile     the Q-quantile of the good scores (numpy linear)\n"
            "  mean-std     mean + K * std (ddof 1) of the good scores\n"
            "  false-alarm  the smallest threshold flagging at most RATE of the given good images\n"
            "  f1           F1-optimal on good + defective images (implied by --defective)\n"
            "The pixel threshold uses the same rule on the maxima of the good images' maps. A model with a\n"
            "region of interest (fit's ROI, docs/roi.md) scores the images inside it only, as predict does.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE      the model (required); rewritten in place unless --out\n"
            "  --out FILE            write the calibrated model here instead\n"
            "  --method NAME         conformal|quantile|mean-std|false-alarm|f1 (default conformal)\n"
            "  --rate R              false-alarm rate for conformal / false-alarm (default 0.01)\n"
            "  --quantile Q          q for quantile (default 0.99)\n"
            "  --k K                 k for mean-std (default 3)\n"
            "  --defective PATH      defective images (file or directory; repeatable)\n"
            "  --masks DIR           their masks: DIR/<stem>_mask.png (MVTec naming)\n"
            "  --mask-rule RULE      with --masks: mask pixels that count as anomalous after the resize:\n"
            "                        full = value 255 (the reference implementation's; default),\n"
            "                        half = value >= 128\n"
            "  --threads N           threads (default: the CPUs this process may use, docs/threads.md)\n"
            "  --no-progress         no progress line on stderr\n"
            "  -h, --help            this help\n"
            "\n"
            "exit codes: 0 ok, 1 failure, 2 usage\n");
}

void cli_split_holdout(cli_paths *all, double fraction, cli_paths *holdout) {
    memset(holdout, 0, sizeof *holdout);
    size_t n = all->n, k = (size_t)floor(fraction * (double)n + 0.5);
    if (k == 0 || k >= n) return;
    holdout->paths = malloc(k * sizeof *holdout->paths);
    if (!holdout->paths) return;
    holdout->cap = k;
    /* image i is held out when floor((i+1)k/n) > floor(ik/n): exactly k, evenly spread */
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (((i + 1) * k) / n > (i * k) / n) holdout->paths[holdout->n++] = all->paths[i];
        else all->paths[w++] = all->paths[i];
    }
    all->n = w;
}

static char *mask_for(const char *masks_dir, const char *img) {
    const char *base = strrchr(img, '/');
    base = base ? base + 1 : img;
    const char *dot = strrchr(base, '.');
    size_t stem = dot ? (size_t)(dot - base) : strlen(base);
    size_t len = strlen(masks_dir) + stem + 16;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s/%.*s_mask.png", masks_dir, (int)stem, base);
    return p;
}

int cmd_calibrate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help(stdout);
        return CLI_EXIT_OK;
    }
    const char *model_path = NULL, *out = NULL, *masks_dir = NULL, *v;
    int method = PC_CALIB_CONFORMAL;
    double rate = PC_THRESHOLD_DEFAULT_RATE, q = 0.99, k = 3.0;
    int32_t threads = 0;
    bool progress = true, defective_given = false, rule_given = false;
    pc_mask_rule rule = PC_MASK_RULE_DEFAULT;
    cli_paths good = {0}, bad = {0};
    char **masks = NULL;
    pc_model *model = NULL;
    int rc = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-m") == 0 || cli_match(a, "--model")) {
            if (!cli_take_value(argc, argv, &i, a[1] == 'm' ? "-m" : "--model", &model_path)) goto out;
        } else if (cli_match(a, "--out")) {
            if (!cli_take_value(argc, argv, &i, "--out", &out)) goto out;
        } else if (cli_match(a, "--method")) {
            if (!cli_take_value(argc, argv, &i, "--method", &v)) goto out;
            if ((method = pc_calib_method_from_name(v)) < 0) {
                cli_error("--method: unknown '%s' (conformal, quantile, mean-std, false-alarm, f1)", v);
                goto out;
            }
        } else if (cli_match(a, "--rate")) {
            if (!cli_take_value(argc, argv, &i, "--rate", &v) || !cli_parse_double("--rate", v, 1e-9, 0.999999, &rate))
                goto out;
        } else if (cli_match(a, "--quantile")) {
            if (!cli_take_value(argc, argv, &i, "--quantile", &v) || !cli_parse_double("--quantile", v, 0, 1, &q))
                goto out;
        } else if (cli_match(a, "--k")) {
            if (!cli_take_value(argc, argv, &i, "--k", &v) || !cli_parse_double("--k", v, -1e6, 1e6, &k)) goto out;
        } else if (cli_match(a, "--defective")) {
            if (!cli_take_value(argc, argv, &i, "--defective", &v)) goto out;
            defective_given = true;
            if (cli_collect_images(&bad, v) != 0) {
                rc = CLI_EXIT_ERROR;
                goto out;
            }
        } else if (cli_match(a, "--masks")) {
            if (!cli_take_value(argc, argv, &i, "--masks", &masks_dir)) goto out;
        } else if (cli_match(a, "--mask-rule")) {
            if (!cli_take_value(argc, argv, &i, "--mask-rule", &v) || !cli_parse_mask_rule("--mask-rule", v, &rule))
                goto out;
            rule_given = true;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 4096, &threads))
                goto out;
        } else if (strcmp(a, "--no-progress") == 0 || strcmp(a, "--quiet") == 0) {
            progress = false;
        } else if (a[0] == '-' && a[1]) {
            cli_error("calibrate: unknown option '%s' (see patchcore calibrate --help)", a);
            goto out;
        } else if (cli_collect_images(&good, a) != 0) {
            rc = CLI_EXIT_ERROR;
            goto out;
        }
    }
    if (!model_path || good.n == 0) {
        cli_error("calibrate: needs -m MODEL and good images (see patchcore calibrate --help)");
        goto out;
    }
    if (defective_given) {
        if (!masks_dir) {
            cli_error("calibrate: --defective needs --masks DIR");
            goto out;
        }
        if (bad.n == 0) {
            cli_error("calibrate: --defective gave no images");
            goto out;
        }
        method = PC_CALIB_F1;
    } else if (method == PC_CALIB_F1) {
        cli_error("calibrate: --method f1 needs --defective and --masks");
        goto out;
    } else if (rule_given) {
        cli_error("calibrate: --mask-rule applies only with --defective and --masks");
        goto out;
    }
    rc = CLI_EXIT_ERROR;
    masks = calloc(bad.n ? bad.n : 1, sizeof *masks);
    for (size_t i = 0; masks && i < bad.n; i++)
        if (!(masks[i] = mask_for(masks_dir, bad.paths[i]))) goto out;
    pc_set_num_threads(threads);
    pc_status st = pc_model_load(model_path, &model);
    if (st) {
        cli_error_status(st, "calibrate");
        goto out;
    }
    double param = method == PC_CALIB_QUANTILE ? q : method == PC_CALIB_MEAN_STD ? k : rate;
    cli_progress pr;
    cli_progress_init(&pr, progress);
    pc_calibration c;
    st = pc_model_calibrate_ex(model, (pc_calib_method)method, param, (const char *const *)good.paths, good.n,
                               (const char *const *)bad.paths, (const char *const *)masks, bad.n, rule,
                               cli_progress_cb, &pr, &c);
    cli_progress_done(&pr);
    if (st) {
        cli_error_status(st, "calibrate");
        goto out;
    }
    char pbuf[32] = "-";
    if (method != PC_CALIB_F1) snprintf(pbuf, sizeof pbuf, "%g", param);
    const char *dst = out ? out : model_path;
    if ((st = pc_model_save(model, dst)) != PC_OK) {
        cli_error_status(st, "calibrate");
        goto out;
    }
    printf("method %s (param %s) on %zu good + %zu defective images\n", pc_calib_method_name((pc_calib_method)method),
           pbuf, c.n_good, c.n_defective);
    if (method == PC_CALIB_F1) printf("mask rule %s\n", cli_mask_rule_desc(rule));
    printf("image threshold %.9g\npixel threshold %.9g\nscore scale %.9g\npixel scale %.9g\nwritten to %s\n",
           c.image_threshold, c.pixel_threshold, c.score_scale, c.pixel_scale, dst);
    rc = CLI_EXIT_OK;
out:
    if (masks)
        for (size_t i = 0; i < bad.n; i++) free(masks[i]);
    free(masks);
    pc_model_free(model);
    cli_paths_free(&good);
    cli_paths_free(&bad);
    return rc;
}
