/*
 * cmd_eval.c - `patchcore eval -m MODEL CATEGORY_DIR [--json FILE] [--csv FILE]`: predict every test
 * image of an MVTec AD category and print image/pixel AUROC, AUPRO, F1-max and per-type AUROC
 * (docs/evaluation.md), pixel metrics with masks under --mask-rule. Also the result writers shared with `benchmark` (cli_eval_write_*).
 */
#include "cli.h"
#include "eval_cli.h"
#include "report_html.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f, "usage: patchcore eval -m MODEL [options] CATEGORY_DIR\n"
               "\n"
               "Evaluate a model on an MVTec AD category (CATEGORY/test/<type>/*, CATEGORY/ground_truth/<type>/\n"
               "<stem>_mask.png): image AUROC, pixel AUROC, AUPRO (FPR <= 0.3), image and pixel F1-max, image\n"
               "AUROC per defect type, counts, mean predict time. Conventions: docs/evaluation.md. A model\n"
               "with a region of interest (fit's ROI, docs/roi.md) is evaluated with it: maps are 0 outside.\n"
               "\n"
               "options:\n"
               "  -m, --model FILE    the model (required)\n"
               "  --json FILE         also write the results as JSON (keys mask_rule, bn_stats, precision, image_auroc, pixel_auroc,\n"
               "                      aupro, image_f1_max, pixel_f1_max, per_type, n_good, n_defective, ...)\n"
               "  --csv FILE          also write one CSV header line and one row\n"
               "  --report FILE       also write a self-contained HTML report (metrics, ROC curves, score\n"
               "                      histogram, sortable table of images with overlays; docs/report.md)\n"
               CLI_MASK_RULE_HELP
               "  --ensemble-norm N   how an ensemble's members combine (docs/ensemble.md): train-zscore\n"
               "                      (default: the model's own predictions, members normalised by\n"
               "                      statistics of good training images) or test-minmax (the reference\n"
               "                      code's rule: min-max over the whole test set, to compare with\n"
               "                      published figures; also prints each member's metrics)\n"
               "  --threads N         threads in all (default: the CPUs this process may use, within its\n"
               "                      cgroup CPU quota; OMP_NUM_THREADS when set)\n"
               "  --jobs N            test images in flight at once, the threads split among them (default\n"
               "                      0: one per 2 threads, so 1 on up to 3 threads; docs/threads.md)\n"
               "  --no-progress      no progress line on stderr\n"
               "  -h, --help          this help\n"
               "\n"
               "exit codes: 0 ok, 1 failure (unreadable model, wrong layout, missing mask), 2 usage\n");
}

/* Images per second of the predicting loop of this run's eval, for the writers below (NaN: not
 * measured, e.g. by `benchmark`, and not written). */
static double g_images_per_s = NAN;
/* An ensemble's rule and its members' own metrics (test-minmax), for the writers (NULL / 0: none). */
static const char *g_ensemble_norm = NULL;
static const pc_eval_result *g_members = NULL;
static int32_t g_n_members = 0;

static void json_num(FILE *f, double v) {
    if (isnan(v)) fputs("null", f);
    else fprintf(f, "%.9g", v);
}

void cli_eval_write_json(FILE *f, const char *category, const pc_eval_result *r, pc_mask_rule rule, pc_bn_stats bn,
                         pc_precision prec) {
    fprintf(f, "{\"category\": ");
    cli_json_string(f, category);
    fprintf(f, ", \"mask_rule\": \"%s\", \"bn_stats\": \"%s\", \"precision\": \"%s\"", pc_mask_rule_name(rule),
            pc_bn_stats_name(bn), pc_precision_name(prec));
    fprintf(f, ", \"image_auroc\": "), json_num(f, r->image_auroc);
    fprintf(f, ", \"pixel_auroc\": "), json_num(f, r->pixel_auroc);
    fprintf(f, ", \"aupro\": "), json_num(f, r->aupro);
    fprintf(f, ", \"image_f1_max\": "), json_num(f, r->image_f1_max);
    fprintf(f, ", \"pixel_f1_max\": "), json_num(f, r->pixel_f1_max);
    fprintf(f, ", \"image_f1_threshold\": "), json_num(f, r->image_f1_threshold);
    fprintf(f, ", \"pixel_f1_threshold\": "), json_num(f, r->pixel_f1_threshold);
    fprintf(f, ", \"n_good\": %lld, \"n_defective\": %lld", (long long)r->n_good, (long long)r->n_defective);
    fprintf(f, ", \"mean_predict_ms\": %.3f", r->mean_predict_ms);
    if (!isnan(g_images_per_s)) fprintf(f, ", \"images_per_s\": %.3f", g_images_per_s);
    if (g_ensemble_norm) fprintf(f, ", \"ensemble_norm\": \"%s\"", g_ensemble_norm);
    if (g_n_members > 0) {
        fprintf(f, ", \"members\": [");
        for (int32_t i = 0; i < g_n_members; i++) {
            const pc_eval_result *m = &g_members[i];
            fprintf(f, "%s{\"image_auroc\": ", i ? ", " : ""), json_num(f, m->image_auroc);
            fprintf(f, ", \"pixel_auroc\": "), json_num(f, m->pixel_auroc);
            fprintf(f, ", \"aupro\": "), json_num(f, m->aupro);
            fprintf(f, ", \"image_f1_max\": "), json_num(f, m->image_f1_max);
            fprintf(f, ", \"pixel_f1_max\": "), json_num(f, m->pixel_f1_max);
            fprintf(f, ", \"mean_predict_ms\": %.3f}", m->mean_predict_ms);
        }
        fputc(']', f);
    }
    fprintf(f, ", \"per_type\": {");
    int first = 1;
    for (int32_t t = 0; t < r->n_types; t++) {
        if (!first) fputs(", ", f);
        first = 0;
        cli_json_string(f, r->per_type[t].name);
        fprintf(f, ": {\"n\": %d, \"image_auroc\": ", (int)r->per_type[t].n);
        json_num(f, r->per_type[t].image_auroc);
        fputc('}', f);
    }
    fputs("}}\n", f);
}

void cli_eval_write_table(FILE *f, const char *category, const pc_eval_result *r, pc_mask_rule rule, pc_bn_stats bn,
                         pc_precision prec) {
    fprintf(f, "%s: %lld good, %lld defective test images, %.1f ms per image", category, (long long)r->n_good,
            (long long)r->n_defective, r->mean_predict_ms);
    if (!isnan(g_images_per_s)) fprintf(f, ", %.2f images/s", g_images_per_s);
    fputc('\n', f);
    fprintf(f, "  mask rule      %s\n", cli_mask_rule_desc(rule));
    fprintf(f, "  batch-norm     %s\n", bn == PC_BN_REFERENCE ? "reference (the reference code's warm-up)"
                                                            : "trained (the weights' running statistics)");
    fprintf(f, "  precision      %s\n", prec == PC_PRECISION_BF16 ? "bf16 (bfloat16 backbone convolutions)" : "f32");
    if (g_ensemble_norm)
        fprintf(f, "  ensemble       %s\n", !strcmp(g_ensemble_norm, "test-minmax")
                                              ? "test-minmax (the reference's min-max over the test set)"
                                              : "train-zscore (z-scores against good training images)");
    fprintf(f, "  %-14s %8.4f\n  %-14s %8.4f\n  %-14s %8.4f\n  %-14s %8.4f\n  %-14s %8.4f\n", "image AUROC",
            r->image_auroc, "pixel AUROC", r->pixel_auroc, "AUPRO@0.3", r->aupro, "image F1-max", r->image_f1_max,
            "pixel F1-max", r->pixel_f1_max);
    fprintf(f, "  per defect type (image AUROC vs all good):\n");
    for (int32_t t = 0; t < r->n_types; t++) {
        if (isnan(r->per_type[t].image_auroc)) continue;
        fprintf(f, "    %-20s %4d  %8.4f\n", r->per_type[t].name, (int)r->per_type[t].n, r->per_type[t].image_auroc);
    }
}

const char *cli_eval_csv_header(void) {
    return "category,image_auroc,pixel_auroc,aupro,image_f1_max,pixel_f1_max,n_good,n_defective,mean_predict_ms,"
           "mask_rule,bn_stats,precision";
}

void cli_eval_write_csv_row(FILE *f, const char *category, const pc_eval_result *r, pc_mask_rule rule, pc_bn_stats bn,
                         pc_precision prec) {
    fprintf(f, "%s,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%lld,%.3f,%s,%s,%s\n", category, r->image_auroc, r->pixel_auroc,
            r->aupro, r->image_f1_max, r->pixel_f1_max, (long long)r->n_good, (long long)r->n_defective,
            r->mean_predict_ms, pc_mask_rule_name(rule), pc_bn_stats_name(bn), pc_precision_name(prec));
}

/* The progress callback, also noting when the last image was done (for images/s). */
typedef struct eval_timing {
    cli_progress *pr;
    double t0, t_end;
} eval_timing;

static int timed_progress(void *user, const char *stage, int64_t done, int64_t total) {
    eval_timing *t = user;
    if (done == total) t->t_end = cli_now();
    return cli_progress_cb(t->pr, stage, done, total);
}

int cmd_eval(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help(stdout);
        return CLI_EXIT_OK;
    }
    const char *model_path = NULL, *dir = NULL, *json = NULL, *csv = NULL, *report = NULL, *v;
    int32_t threads = 0, jobs = 0;
    bool progress = true;
    pc_ensemble_norm norm = PC_ENSEMBLE_TRAIN_ZSCORE;
    pc_mask_rule rule = PC_MASK_RULE_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-m") == 0 || cli_match(a, "--model")) {
            if (!cli_take_value(argc, argv, &i, strcmp(a, "-m") == 0 ? "-m" : "--model", &model_path))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--mask-rule")) {
            if (!cli_take_value(argc, argv, &i, "--mask-rule", &v) || !cli_parse_mask_rule("--mask-rule", v, &rule))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--ensemble-norm")) {
            if (!cli_take_value(argc, argv, &i, "--ensemble-norm", &v)) return CLI_EXIT_USAGE;
            const int n = pc_ensemble_norm_from_name(v);
            if (n < 0) {
                cli_error("--ensemble-norm: '%s' is not train-zscore or test-minmax", v);
                return CLI_EXIT_USAGE;
            }
            norm = (pc_ensemble_norm)n;
        } else if (cli_match(a, "--json")) {
            if (!cli_take_value(argc, argv, &i, "--json", &json)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--csv")) {
            if (!cli_take_value(argc, argv, &i, "--csv", &csv)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--report")) {
            if (!cli_take_value(argc, argv, &i, "--report", &report)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 4096, &threads))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--jobs")) {
            if (!cli_take_value(argc, argv, &i, "--jobs", &v) || !cli_parse_int("--jobs", v, 0, 256, &jobs))
                return CLI_EXIT_USAGE;
        } else if (strcmp(a, "--no-progress") == 0 || strcmp(a, "--quiet") == 0) {
            progress = false;
        } else if (a[0] == '-' && a[1]) {
            cli_error("eval: unknown option '%s' (see patchcore eval --help)", a);
            return CLI_EXIT_USAGE;
        } else if (!dir) {
            dir = a;
        } else {
            cli_error("eval: one CATEGORY_DIR only ('%s' is extra)", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!model_path || !dir) {
        cli_error("eval: needs -m MODEL and CATEGORY_DIR (see patchcore eval --help)");
        return CLI_EXIT_USAGE;
    }
    pc_set_num_threads(threads);
    pc_model *model = NULL;
    pc_dataset *ds = NULL;
    pc_eval_result r = {0};
    pc_eval_detail detail = {0}; /* per-image results, only for --report */
    pc_eval_result *members = NULL;
    int rc = CLI_EXIT_ERROR;
    pc_status st;
    if ((st = pc_model_load(model_path, &model)) != PC_OK) {
        cli_error_status(st, "eval");
        goto out;
    }
    if ((st = pc_dataset_open(dir, 0, &ds)) != PC_OK) {
        cli_error_status(st, "eval");
        goto out;
    }
    cli_progress pr;
    cli_progress_init(&pr, progress);
    if (report) {
        /* Every test image's map, at its own size (crop x crop, or the image's when the model tiles). */
        size_t npix;
        if ((st = pc_eval_map_sizes(model, ds, NULL, NULL, &npix)) != PC_OK) {
            cli_error_status(st, "eval");
            goto out;
        }
        detail.predictions = malloc(ds->n_test * sizeof *detail.predictions);
        detail.geometries = malloc(ds->n_test * sizeof *detail.geometries);
        detail.maps = malloc(npix * sizeof *detail.maps);
        detail.masks = malloc(npix);
        if (!detail.predictions || !detail.geometries || !detail.maps || !detail.masks) {
            cli_error("eval: out of memory for the report's %zu maps", ds->n_test);
            goto out;
        }
    }
    if (jobs == 0) jobs = pc_default_num_jobs(0);
    eval_timing tm = {.pr = &pr, .t0 = cli_now()};
    tm.t_end = tm.t0;
    const int32_t n_members = pc_model_member_count(model);
    members = calloc((size_t)n_members, sizeof *members);
    if (!members) {
        cli_error("eval: out of memory");
        goto out;
    }
    if (n_members > 1 || norm != PC_ENSEMBLE_TRAIN_ZSCORE) g_ensemble_norm = pc_ensemble_norm_name(norm);
    st = pc_eval_run_norm(&r, model, ds, rule, jobs, norm, timed_progress, &tm, report ? &detail : NULL, members);
    if (st == PC_OK && norm == PC_ENSEMBLE_TEST_MINMAX) g_members = members, g_n_members = n_members;
    cli_progress_done(&pr);
    /* images/s over the predicting loop: from the start to the last image's progress report */
    if (st == PC_OK && tm.t_end > tm.t0) g_images_per_s = (double)ds->n_test / (tm.t_end - tm.t0);
    if (st == PC_OK && progress)
        fprintf(stderr, "eval: %zu images, %.2f images/s (%d job%s x %d thread%s)\n", ds->n_test, g_images_per_s,
                (int)jobs, jobs == 1 ? "" : "s", (int)pc_job_threads(0, jobs), pc_job_threads(0, jobs) == 1 ? "" : "s");
    if (st != PC_OK) {
        cli_error_status(st, "eval");
        goto out;
    }
    pc_model_info minfo;
    pc_model_get_info(model, &minfo);
    cli_eval_write_table(stdout, dir, &r, rule, minfo.bn_stats, minfo.precision);
    for (int32_t i = 0; i < g_n_members; i++) {
        pc_model_info mi;
        pc_model_get_info(pc_model_member(model, i), &mi);
        printf("  member %d (%s, %d px, raw scores): image AUROC %.4f, pixel AUROC %.4f, AUPRO %.4f, %.1f ms\n",
               (int)i + 1, pc_arch_name(mi.arch), (int)mi.crop, members[i].image_auroc, members[i].pixel_auroc,
               members[i].aupro, members[i].mean_predict_ms);
    }
    rc = CLI_EXIT_OK;
    if (json && cli_eval_write_file(json, dir, &r, rule, minfo.bn_stats, minfo.precision, 0) != 0) rc = CLI_EXIT_ERROR;
    if (csv && cli_eval_write_file(csv, dir, &r, rule, minfo.bn_stats, minfo.precision, 1) != 0) rc = CLI_EXIT_ERROR;
    if (report && cli_report_eval(report, dir, model_path, model, ds, &r, &detail, rule) != 0) rc = CLI_EXIT_ERROR;
out:
    free(detail.predictions);
    free(detail.geometries);
    free(detail.maps);
    free(detail.masks);
    pc_eval_result_free(&r);
    for (int32_t i = 0; members && i < g_n_members; i++) pc_eval_result_free(&members[i]);
    free(members);
    g_members = NULL, g_n_members = 0, g_ensemble_norm = NULL;
    pc_dataset_free(ds);
    pc_model_free(model);
    return rc;
}

int cli_eval_write_file(const char *path, const char *category, const pc_eval_result *r, pc_mask_rule rule,
                        pc_bn_stats bn, pc_precision prec, int csv) {
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_error("%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    if (csv) {
        fprintf(f, "%s\n", cli_eval_csv_header());
        cli_eval_write_csv_row(f, category, r, rule, bn, prec);
    } else {
        cli_eval_write_json(f, category, r, rule, bn, prec);
    }
    if (fclose(f) != 0) {
        cli_error("%s: write failed", path);
        return -1;
    }
    return 0;
}
