/*
 * cmd_benchmark.c - `patchcore benchmark [fit options] CATEGORY_DIRS_OR_ROOT... [--out DIR]`: for each
 * MVTec AD category fit on train/good, evaluate on test, and write results.csv and results.md (a row
 * per category, a mean row, and the exact settings, mask rule included) into DIR; the table is also printed.
 */
#include "cli.h"
#include "eval_cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void help(FILE *f) {
    fprintf(f, "usage: patchcore benchmark [fit options] [options] CATEGORY_DIRS_OR_ROOT...\n"
               "\n"
               "For each MVTec AD category (a directory with train/good and test; a directory holding such\n"
               "directories stands for all of them, in sorted order) fit a model on train/good, evaluate it\n"
               "on test, and write DIR/results.csv and DIR/results.md: a row per category and a mean row,\n"
               "with the exact settings. Metrics as `patchcore eval` (docs/evaluation.md).\n"
               "\n"
               "options:\n"
               "  --out DIR           where the results go (default .)\n"
               "  --save-models       also write DIR/<category>.pcm\n"
               CLI_MASK_RULE_HELP
               "  --no-progress       no progress line on stderr\n"
               "  -h, --help          this help\n"
               "\n"
               "fit options:\n");
    cli_fit_options_help(f);
    fprintf(f, "\nexit codes: 0 ok, 1 failure, 2 usage, 3 some categories failed (the others are in the table)\n");
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_category(const char *p) {
    char b[4096];
    snprintf(b, sizeof b, "%s/train/good", p);
    if (!is_dir(b)) return false;
    snprintf(b, sizeof b, "%s/test", p);
    return is_dir(b);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add(cli_paths *l, const char *p) {
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->paths, c * sizeof *v);
        if (!v) return -1;
        l->paths = v, l->cap = c;
    }
    return (l->paths[l->n++] = strdup(p)) ? 0 : -1;
}

static int collect_categories(cli_paths *out, const char *arg) {
    if (is_category(arg)) return add(out, arg);
    DIR *d = opendir(arg);
    if (!d) {
        cli_error("%s: not a category directory nor a readable root of categories: %s", arg, strerror(errno));
        return -1;
    }
    cli_paths found = {0};
    struct dirent *e;
    char b[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(b, sizeof b, "%s/%s", arg, e->d_name);
        if (is_category(b) && add(&found, b) != 0) break;
    }
    closedir(d);
    if (found.n == 0) {
        cli_error("%s: no MVTec AD category (train/good + test) in it", arg);
        cli_paths_free(&found);
        return -1;
    }
    qsort(found.paths, found.n, sizeof *found.paths, cmp);
    int rc = 0;
    for (size_t i = 0; i < found.n && rc == 0; i++) rc = add(out, found.paths[i]);
    cli_paths_free(&found);
    return rc;
}

static const char *base(const char *p) {
    static char b[512];
    snprintf(b, sizeof b, "%s", p);
    size_t n = strlen(b);
    while (n > 1 && b[n - 1] == '/') b[--n] = 0;
    const char *s = strrchr(b, '/');
    return s ? s + 1 : b;
}

static void settings(char *buf, size_t size, const pc_model_info *in, int32_t threads) {
    char layers[64] = "";
    for (int i = 0; i < in->n_layers; i++)
        snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "%s%d", i ? "+" : "", (int)in->layers[i]);
    snprintf(buf, size,
             "backbone %s (batch-norm %s, precision %s), layers %s, resize %d, crop %d, patch %d, pre-dim %d, dim %d, k %d, sampler %s, "
             "coreset ratio %g (bank %lld of %lld patches), seed %llu, reweight %d, threads %d",
             pc_arch_name(in->arch), pc_bn_stats_name(in->bn_stats), pc_precision_name(in->precision), layers, (int)in->resize, (int)in->crop, (int)in->patch, (int)in->pre_dim,
             (int)in->dim, (int)in->k,
             in->sampler == PC_SAMPLER_APPROX_GREEDY ? "approx-greedy" : in->sampler == PC_SAMPLER_RANDOM ? "random" : "none", in->coreset_ratio, (long long)in->bank_size,
             (long long)in->n_patches_total, (unsigned long long)in->seed, (int)in->reweight_b, (int)threads);
}

int cmd_benchmark(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help(stdout);
        return CLI_EXIT_OK;
    }
    pc_fit_options opt;
    pc_fit_options_init(&opt);
    int32_t threads = 0;
    const char *outdir = ".";
    bool progress = true, save = false;
    pc_mask_rule rule = PC_MASK_RULE_DEFAULT;
    const char *v;
    cli_paths cats = {0};
    int rc = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool matched;
        if (!cli_parse_fit_option(argc, argv, &i, &opt, &threads, &matched)) goto out;
        if (matched) continue;
        if (cli_match(a, "--out")) {
            if (!cli_take_value(argc, argv, &i, "--out", &outdir)) goto out;
        } else if (cli_match(a, "--mask-rule")) {
            if (!cli_take_value(argc, argv, &i, "--mask-rule", &v) || !cli_parse_mask_rule("--mask-rule", v, &rule))
                goto out;
        } else if (strcmp(a, "--save-models") == 0) {
            save = true;
        } else if (strcmp(a, "--no-progress") == 0 || strcmp(a, "--quiet") == 0) {
            progress = false;
        } else if (a[0] == '-' && a[1]) {
            cli_error("benchmark: unknown option '%s' (see patchcore benchmark --help)", a);
            goto out;
        } else if (collect_categories(&cats, a) != 0) {
            rc = CLI_EXIT_ERROR;
            goto out;
        }
    }
    if (cats.n == 0) {
        cli_error("benchmark: no category given (see patchcore benchmark --help)");
        goto out;
    }
    pc_set_num_threads(threads);
    rc = CLI_EXIT_ERROR;
    char path[4096], set[1024] = "";
    snprintf(path, sizeof path, "%s/results.csv", outdir);
    FILE *csv = fopen(path, "w");
    if (!csv) {
        cli_error("%s: cannot write: %s", path, strerror(errno));
        goto out;
    }
    snprintf(path, sizeof path, "%s/results.md", outdir);
    FILE *md = fopen(path, "w");
    if (!md) {
        cli_error("%s: cannot write: %s", path, strerror(errno));
        fclose(csv);
        goto out;
    }
    fprintf(csv, "%s,fit_seconds\n", cli_eval_csv_header());
    double sum[5] = {0};
    int ok = 0, failed = 0;
    char (*rows)[256] = calloc(cats.n, sizeof *rows);
    for (size_t c = 0; c < cats.n; c++) {
        const char *name = base(cats.paths[c]);
        char nm[256];
        snprintf(nm, sizeof nm, "%s", name);
        pc_dataset *ds = NULL;
        pc_model *model = NULL;
        pc_eval_result r = {0};
        cli_progress pr;
        pc_status st = pc_dataset_open(cats.paths[c], 1, &ds);
        double t0 = cli_now(), fit_s = 0;
        if (st == PC_OK) {
            cli_progress_init(&pr, progress);
            opt.progress = cli_progress_cb, opt.progress_user = &pr;
            st = pc_model_fit(&opt, (const char *const *)ds->train_paths, ds->n_train, &model);
            cli_progress_done(&pr);
            fit_s = cli_now() - t0;
        }
        if (st == PC_OK && save) {
            snprintf(path, sizeof path, "%s/%s.pcm", outdir, nm);
            st = pc_model_save(model, path);
        }
        if (st == PC_OK) {
            cli_progress_init(&pr, progress);
            st = pc_eval_run_ex(&r, model, ds, rule, cli_progress_cb, &pr, NULL);
            cli_progress_done(&pr);
        }
        if (st == PC_OK) {
            if (!set[0]) {
                pc_model_info in;
                pc_model_get_info(model, &in);
                settings(set, sizeof set, &in, pc_get_num_threads());
            }
            fprintf(csv, "%s,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%lld,%.3f,%s,%s,%s,%.1f\n", nm, r.image_auroc, r.pixel_auroc,
                    r.aupro, r.image_f1_max, r.pixel_f1_max, (long long)r.n_good, (long long)r.n_defective,
                    r.mean_predict_ms, pc_mask_rule_name(rule), pc_bn_stats_name(opt.bn_stats),
                    pc_precision_name(opt.precision), fit_s);
            snprintf(rows[c], sizeof rows[c], "| %s | %.4f | %.4f | %.4f | %.4f | %.4f | %lld | %lld | %.1f | %.1f |", nm,
                     r.image_auroc, r.pixel_auroc, r.aupro, r.image_f1_max, r.pixel_f1_max, (long long)r.n_good,
                     (long long)r.n_defective, fit_s, r.mean_predict_ms);
            double v[5] = {r.image_auroc, r.pixel_auroc, r.aupro, r.image_f1_max, r.pixel_f1_max};
            for (int j = 0; j < 5; j++) sum[j] += v[j];
            ok++;
            cli_eval_write_table(stdout, nm, &r, rule, opt.bn_stats, opt.precision);
            printf("  fit %.1f s\n", fit_s);
        } else {
            cli_error_status(st, nm);
            snprintf(rows[c], sizeof rows[c], "| %s | failed | | | | | | | | |", nm);
            failed++;
        }
        fflush(stdout);
        pc_eval_result_free(&r);
        pc_model_free(model);
        pc_dataset_free(ds);
    }
    fprintf(md, "| category | image AUROC | pixel AUROC | AUPRO@0.3 | image F1-max | pixel F1-max | good | defective "
                "| fit s | ms/image |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t c = 0; c < cats.n; c++) fprintf(md, "%s\n", rows[c]);
    if (ok) {
        fprintf(md, "| **mean** | %.4f | %.4f | %.4f | %.4f | %.4f | | | | |\n", sum[0] / ok, sum[1] / ok, sum[2] / ok,
                sum[3] / ok, sum[4] / ok);
        fprintf(csv, "mean,%.6f,%.6f,%.6f,%.6f,%.6f,,,,%s,%s,%s,\n", sum[0] / ok, sum[1] / ok, sum[2] / ok, sum[3] / ok,
                sum[4] / ok, pc_mask_rule_name(rule), pc_bn_stats_name(opt.bn_stats), pc_precision_name(opt.precision));
        printf("mean over %d categories: image AUROC %.4f, pixel AUROC %.4f, AUPRO %.4f\n", ok, sum[0] / ok,
               sum[1] / ok, sum[2] / ok);
    }
    fprintf(md, "\nSettings: %s. Pixel metrics with mask rule %s. patchcore %s.\n",
            set[0] ? set : "(no category succeeded)", cli_mask_rule_desc(rule), pc_version());
    free(rows);
    int e1 = fclose(csv), e2 = fclose(md);
    if (e1 || e2) cli_error("benchmark: writing the results in %s failed", outdir);
    else printf("results: %s/results.csv, %s/results.md\n", outdir, outdir);
    rc = (e1 || e2 || ok == 0) ? CLI_EXIT_ERROR : failed ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
out:
    cli_paths_free(&cats);
    return rc;
}
