/*
 * cmd_fit.c - `patchcore fit`: build a model (memory bank) from good images and write it to one file.
 */
#include "cli.h"
#include "eval_cli.h"

#include <math.h>
#ifdef PC_HAVE_MPI
#include "fit_mpi.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore fit [options] -o MODEL TRAIN_IMAGES_OR_DIRS...\n"
            "\n"
            "Build a PatchCore model from images of good parts: backbone features of every image, a\n"
            "coreset memory bank, written with the backbone weights and all settings to one file MODEL.\n"
            "Directories are walked recursively for .png/.jpg/.jpeg files in sorted order. Images that\n"
            "cannot be read are reported and skipped (exit code 3 if any were).\n"
            "\n"
            "An ensemble (docs/ensemble.md) is several models in one file: give --backbone and --weights\n"
            "as comma-separated lists, one item per member (--resize, --crop likewise; --layers as\n"
            "semicolon-separated groups, e.g. \"2,3;1,2\"); a single value applies to every member.\n"
            "Members' scores and maps are normalised by leave-one-out predictions of the training\n"
            "images (stored in the model) and averaged.\n"
            "\n"
            "options:\n");
    cli_fit_options_help(f);
    cli_tiling_options_help(f, true);
    fprintf(f,
            "  -o, --output MODEL  the model file to write (required; written atomically)\n"
            "  --holdout F         keep the fraction F (0 < F < 1) of the training images, evenly spread\n"
            "                      over the sorted list, out of the bank and calibrate the thresholds on\n"
            "                      them (split-conformal at 1%%, as `patchcore calibrate` by default)\n"
            "  --calibrate DIR     calibrate on the good images in DIR (file or folder; repeatable)\n"
            "  --mpi               spread the fit over the processes of an MPI job (mpirun -np N patchcore\n"
            "                      fit --mpi ...; docs/mpi.md): each extracts its share of the images, the\n"
            "                      coreset runs over all of them, process 0 writes MODEL, the same file\n"
            "                      as one process writes. Needs a build with MPI (make MPI=1). Without\n"
            "                      the flag, a process started by mpirun/mpiexec does the same\n"
            "  --no-mpi            fit alone, even when started by mpirun\n"
            "  --json              print the summary as one JSON object\n"
            "  --no-progress       no progress line on stderr\n"
            "  -q, --quiet         no progress and no summary\n"
            "  -h, --help          this help\n"
            "\n"
            "exit codes: 0 ok, 1 error, 2 bad command line, 3 some images skipped\n");
}

/* Wraps the progress line and notes when each stage last reported, to split the fit time by stage. */
typedef struct stage_clock {
    cli_progress *prog;
    double t_features_end; /* time of the last "features" report (features end, coreset begins) */
} stage_clock;

static int stage_clock_cb(void *user, const char *stage, int64_t done, int64_t total) {
    stage_clock *c = user;
    const size_t n = strlen(stage);
    if (n >= 8 && strcmp(stage + n - 8, "features") == 0) c->t_features_end = cli_now();
    return cli_progress_cb(c->prog, stage, done, total);
}


/* Whether an MPI launcher started this process (Open MPI's mpirun, MPICH's Hydra, a PMIx launcher),
 * with its rank and the job's size (size 0: the launcher did not say). */
static bool launched_by_mpi(int *rank, int *size) {
    const char *r = getenv("OMPI_COMM_WORLD_RANK"), *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) r = getenv("PMI_RANK"), n = getenv("PMI_SIZE");
    if (!n && !(r = getenv("PMIX_RANK"))) return false;
    *rank = r ? atoi(r) : 0;
    *size = n ? atoi(n) : 0;
    return true;
}

int cmd_fit(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    pc_fit_options opt, members[16];
    pc_fit_options_init(&opt);
    cli_members mem = {0};
    int32_t threads = 0, n_members = 1;
    const char *output = NULL;
    bool json = false, quiet = false, progress = true;
    int mpi_flag = 0; /* 1 --mpi, -1 --no-mpi, 0 as the launcher says */
    bool distributed = false;
    cli_paths inputs = {0}, cal = {0}, held = {0};
    double holdout = 0;
    unsigned tiling_given = 0;
    const char *v;
    int rc = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool matched;
        if (!cli_parse_fit_option_members(argc, argv, &i, &opt, &mem, &threads, &matched)) goto out;
        if (matched) continue;
        if (!cli_parse_tiling_option(argc, argv, &i, &opt.tiling, &tiling_given, &matched)) goto out;
        if (matched) continue;
        if (cli_match(a, "--output") || strcmp(a, "-o") == 0) {
            if (!cli_take_value(argc, argv, &i, strcmp(a, "-o") ? "--output" : "-o", &output)) goto out;
        } else if (cli_match(a, "--holdout")) {
            if (!cli_take_value(argc, argv, &i, "--holdout", &v) || !cli_parse_double("--holdout", v, 0, 1, &holdout))
                goto out;
            if (holdout <= 0 || holdout >= 1) {
                cli_error("--holdout: the fraction must be in (0, 1)");
                goto out;
            }
        } else if (cli_match(a, "--calibrate")) {
            if (!cli_take_value(argc, argv, &i, "--calibrate", &v)) goto out;
            if (cli_collect_images(&cal, v) != 0) {
                rc = CLI_EXIT_ERROR;
                goto out;
            }
        } else if (strcmp(a, "--mpi") == 0) {
            mpi_flag = 1;
        } else if (strcmp(a, "--no-mpi") == 0) {
            mpi_flag = -1;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--no-progress") == 0) {
            progress = false;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = true;
            progress = false;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error("fit: unknown option '%s' (see patchcore fit --help)", a);
            goto out;
        } else if (cli_collect_images(&inputs, a) != 0) {
            rc = CLI_EXIT_ERROR;
            goto out;
        }
    }
    if (!output) {
        cli_error("fit: needs -o MODEL (see patchcore fit --help)");
        goto out;
    }
    if (inputs.n == 0) {
        cli_error("fit: no training images given or found");
        goto out;
    }
    if (tiling_given && !(tiling_given & CLI_TILE_GIVEN)) {
        cli_error("fit: --tile-overlap, --tile-scale and --stitch need --tile S");
        goto out;
    }
    if (!cli_members_expand(&mem, &opt, members, (int32_t)(sizeof members / sizeof members[0]), &n_members)) goto out;
    if (holdout > 0) {
        cli_split_holdout(&inputs, holdout, &held);
        if (held.n == 0) {
            cli_error("fit: --holdout %g keeps none of the %zu images (or all of them) out", holdout, inputs.n);
            goto out;
        }
        /* the held-out images join the calibration set */
        for (size_t j = 0; j < held.n; j++) {
            if (cal.n == cal.cap) {
                size_t nc = cal.cap ? 2 * cal.cap : 16;
                char **np = realloc(cal.paths, nc * sizeof *np);
                if (!np) {
                    cli_error("fit: out of memory");
                    rc = CLI_EXIT_ERROR;
                    goto out;
                }
                cal.paths = np, cal.cap = nc;
            }
            cal.paths[cal.n++] = held.paths[j];
            held.paths[j] = NULL;
        }
    }
    if (cli_parse_only) {
        rc = CLI_EXIT_OK;
        goto out;
    }
    /* Spread over MPI processes with --mpi, or when an MPI launcher started this process: without MPI,
     * N processes started by mpirun would each fit every image and write the same file. */
    int mpi_rank = 0, mpi_size = 1;
    const bool launched = launched_by_mpi(&mpi_rank, &mpi_size);
    distributed = mpi_flag > 0 || (mpi_flag == 0 && launched && mpi_size != 1);
#ifndef PC_HAVE_MPI
    if (distributed) {
        if (mpi_flag > 0)
            cli_error("fit: --mpi: this patchcore was built without MPI (build one with make MPI=1, docs/mpi.md)");
        else if (mpi_rank == 0)
            cli_error("fit: started by an MPI launcher (rank %d of %d), but this patchcore was built without MPI: "
                      "every process would fit all the images and write the same file. Build with make MPI=1 "
                      "(docs/mpi.md), or give --no-mpi to fit on each process alone",
                      mpi_rank, mpi_size);
        distributed = false;
        goto out;
    }
#else
    cli_mpi_report mrep = {0};
    if (distributed) {
        if (n_members > 1) {
            cli_error("fit: an ensemble cannot be spread over MPI processes yet (fit it with --no-mpi)");
            distributed = false;
            goto out;
        }
        int32_t r32 = 0, n32 = 1;
        if (cli_mpi_start(&r32, &n32)) {
            rc = CLI_EXIT_ERROR;
            distributed = false;
            goto out;
        }
        mpi_rank = r32, mpi_size = n32;
        if (mpi_rank != 0) quiet = true, progress = false; /* process 0 speaks for the job */
    }
#endif
    pc_set_num_threads(threads);
    cli_progress prog;
    cli_progress_init(&prog, progress);
    cli_skipped sk = {0};
    stage_clock clock = {&prog, 0.0};
    for (int32_t m = 0; m < n_members; m++) {
        members[m].progress = stage_clock_cb;
        members[m].progress_user = &clock;
        members[m].on_image_error = cli_on_image_error;
        members[m].on_image_error_user = &sk;
    }
    double t0 = cli_now();
    pc_model *model = NULL;
    pc_status st;
#ifdef PC_HAVE_MPI
    if (distributed)
        st = cli_mpi_fit(&members[0], (const char *const *)inputs.paths, inputs.n, &model, &mrep);
    else
#endif
        st = pc_model_fit_ensemble(members, n_members, (const char *const *)inputs.paths, inputs.n, &model);
    cli_progress_done(&prog);
    double t_end = cli_now(), t_fit = t_end - t0;
    /* features: decoding, preprocessing, backbone and patch features; coreset: from there to the end
     * of the fit (projection, greedy selection, gathering the bank and its norms). */
    double t_features = clock.t_features_end > 0 ? clock.t_features_end - t0 : t_fit;
    double t_coreset = t_fit - t_features;
#ifdef PC_HAVE_MPI
    if (distributed) { /* the slowest process's features; the loop; the bank to process 0 */
        t_features = mrep.features_seconds;
        t_coreset = mrep.coreset_seconds;
    }
#endif
    if (st) {
        if (mpi_rank == 0) cli_error_status(st, "fit");
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    if (!model) { /* an MPI process other than 0: its part is done, process 0 writes the model */
        rc = CLI_EXIT_OK;
        goto out;
    }
    pc_calibration calib;
    bool calibrated = false;
    double t_cal = 0;
    if (cal.n) {
        double tc0 = cli_now();
        cli_progress_init(&prog, progress);
        st = pc_model_calibrate(model, PC_CALIB_CONFORMAL, PC_THRESHOLD_DEFAULT_RATE, (const char *const *)cal.paths,
                                cal.n, NULL, NULL, 0, cli_progress_cb, &prog, &calib);
        cli_progress_done(&prog);
        t_cal = cli_now() - tc0;
        if (st) {
            cli_error_status(st, "fit: calibration");
            pc_model_free(model);
            rc = CLI_EXIT_ERROR;
            goto out;
        }
        calibrated = true;
    }
    double t_save0 = cli_now();
    st = pc_model_save(model, output);
    double t_save = cli_now() - t_save0;
    if (st) {
        cli_error_status(st, "fit");
        pc_model_free(model);
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    pc_model_info info;
    pc_model_get_info(model, &info);
    /* the batches in flight, as the library resolves them (0: the default; never more than batches) */
    int32_t jobs = opt.jobs > 0 ? opt.jobs : pc_default_num_jobs(0);
    const size_t n_batches = (inputs.n + (size_t)opt.batch_size - 1) / (size_t)opt.batch_size;
    if ((size_t)jobs > n_batches) jobs = (int32_t)n_batches;
    /* images through the backbone per second of the features stage (decoding included) */
    const double feat_rate = t_features > 0 ? (double)inputs.n / t_features : 0.0;
    if (!quiet) {
        if (json) {
            printf("{\"model\": ");
            cli_json_string(stdout, output);
            printf(", \"arch\": \"%s\", \"bn_stats\": \"%s\", \"precision\": \"%s\", \"n_images\": %d, "
                   "\"n_skipped\": %d, \"n_patches\": %lld, \"bank_size\": %lld, \"grid\": [%d, %d], \"dim\": %d, "
                   "\"jobs\": %d, \"threads_per_job\": %d, \"seconds\": %.3f, \"features_seconds\": %.3f, "
                   "\"features_images_per_s\": %.3f, \"coreset_seconds\": %.3f, \"save_seconds\": %.3f",
                   pc_arch_name(info.arch), pc_bn_stats_name(info.bn_stats), pc_precision_name(info.precision),
                   (int)info.n_train_images, sk.count, (long long)info.n_patches_total, (long long)info.bank_size,
                   (int)info.grid_h, (int)info.grid_w, (int)info.dim, (int)jobs, (int)pc_job_threads(0, jobs), t_fit,
                   t_features, feat_rate, t_coreset, t_save);
#ifdef PC_HAVE_MPI
            if (distributed) {
                printf(", \"ranks\": %d, \"mpi_library\": ", (int)mrep.size);
                cli_json_string(stdout, mrep.library);
                printf(", \"features_min_seconds\": %.3f, "
                       "\"gather_seconds\": %.3f, \"coreset_picks\": %lld, \"coreset_comm_seconds\": %.3f, "
                       "\"comm_seconds\": %.3f, \"comm_bytes\": %lld",
                       mrep.features_min_seconds, mrep.gather_seconds,
                       (long long)mrep.picks, mrep.coreset_comm_seconds, mrep.comm_seconds, (long long)mrep.comm_bytes);
            }
#endif
        }
        if (json && n_members > 1) {
            printf(", \"members\": [");
            for (int32_t m = 0; m < n_members; m++) {
                pc_model_info mi;
                double z[4];
                pc_model_get_info(pc_model_member(model, m), &mi);
                pc_model_member_norm(model, m, z);
                printf("%s{\"arch\": \"%s\", \"layers\": [", m ? ", " : "", pc_arch_name(mi.arch));
                for (int32_t l = 0; l < mi.n_layers; l++) printf("%s%d", l ? ", " : "", (int)mi.layers[l]);
                printf("], \"resize\": %d, \"crop\": %d, \"bank_size\": %lld, \"norm\": [%.17g, %.17g, %.17g, %.17g]}",
                       (int)mi.resize, (int)mi.crop, (long long)mi.bank_size, z[0], z[1], z[2], z[3]);
            }
            printf("]");
        }
        if (json && calibrated)
            printf(", \"n_calibration\": %zu, \"calibrate_seconds\": %.3f, \"image_threshold\": %.9g, "
                   "\"pixel_threshold\": %.9g, \"score_scale\": %.9g, \"pixel_scale\": %.9g",
                   calib.n_good, t_cal, calib.image_threshold, calib.pixel_threshold, calib.score_scale,
                   calib.pixel_scale);
        if (json) printf("}\n");
        else
            printf("model      %s\nbackbone   %s (batch-norm %s, precision %s)\nimages     %d used, %d skipped\n"
                   "patches    %lld (grid %dx%d, dim %d)\nbank       %lld\ntime       %.2f s (features %.2f s, "
                   "%.2f images/s, %d job%s x %d thread%s; coreset %.2f s; save %.2f s)\n",
                   output, pc_arch_name(info.arch), pc_bn_stats_name(info.bn_stats), pc_precision_name(info.precision),
                   (int)info.n_train_images, sk.count, (long long)info.n_patches_total, (int)info.grid_h,
                   (int)info.grid_w, (int)info.dim, (long long)info.bank_size, t_fit, t_features, feat_rate, (int)jobs,
                   jobs == 1 ? "" : "s", (int)pc_job_threads(0, jobs), pc_job_threads(0, jobs) == 1 ? "" : "s",
                   t_coreset, t_save);
#ifdef PC_HAVE_MPI
        if (!json && distributed)
            printf("processes  %d (%s): features %.2f-%.2f s per process; coreset %.2f s, of which %.2f s in "
                   "%lld reductions; bank gathered in %.2f s; process 0 talked %.2f s, %.1f MB\n",
                   (int)mrep.size, mrep.library, mrep.features_min_seconds, mrep.features_seconds,
                   mrep.coreset_seconds, mrep.coreset_comm_seconds, (long long)mrep.picks, mrep.gather_seconds,
                   mrep.comm_seconds, (double)mrep.comm_bytes / 1e6);
#endif
        for (int32_t m = 0; n_members > 1 && !json && m < n_members; m++) {
            pc_model_info mi;
            double z[4];
            pc_model_get_info(pc_model_member(model, m), &mi);
            pc_model_member_norm(model, m, z);
            printf("member %d   %s, layers", (int)m + 1, pc_arch_name(mi.arch));
            for (int32_t l = 0; l < mi.n_layers; l++)
                printf("%s%s", l ? "," : " ", pc_layer_name(mi.arch, mi.layers[l]));
            printf(", %d/%d px, grid %dx%d, bank %lld; good-image score %.4g +- %.3g, pixel %.4g +- %.3g\n",
                   (int)mi.resize, (int)mi.crop, (int)mi.grid_h, (int)mi.grid_w, (long long)mi.bank_size, z[0], z[1],
                   z[2], z[3]);
        }
        if (!json && calibrated)
            printf("calibrated on %zu good images (%.2f s): image threshold %.6g, pixel threshold %.6g\n",
                   calib.n_good, t_cal, calib.image_threshold, calib.pixel_threshold);
    }
    pc_model_free(model);
    rc = sk.count ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
out:
#ifdef PC_HAVE_MPI
    if (distributed) cli_mpi_end();
#endif
    cli_members_free(&mem);
    cli_paths_free(&inputs);
    cli_paths_free(&cal);
    cli_paths_free(&held);
    return rc;
}
