/*
 * main.c - the patchcore command: dispatches `patchcore <verb> ...` to the verb's run function.
 * Each verb lives in its own cli/cmd_<verb>.c and prints its own --help.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

/* The version line, then what the kernels run on here (speed depends on it: docs/threads.md). */
static void print_version(void) {
    printf("patchcore %s\n", pc_version());
    printf("compute: oneDNN isa %s, bf16 %s, %d threads by default\n", pc_compute_isa(),
           pc_precision_supported(PC_PRECISION_BF16, NULL, 0) ? "native" : "not supported",
           (int)pc_default_num_threads());
}

static int cmd_version(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        printf("usage: patchcore version\n\nPrint the library version, the instruction set the compute "
               "library dispatches to on this CPU, whether bf16 runs natively, and the default thread "
               "count, and exit.\n");
        return CLI_EXIT_OK;
    }
    print_version();
    return CLI_EXIT_OK;
}

/* One line per verb, in the order `patchcore --help` lists them. */
int cmd_preprocess(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_update(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_benchmark(int argc, char **argv);
#ifdef PC_HAVE_SERVE
int cmd_serve(int argc, char **argv); /* server/cmd_serve.c; built when libmicrohttpd was found */
#endif

static const cli_verb verbs[] = {
    {"version", "print the version", cmd_version},
    {"fit", "build a model (memory bank) from images of good parts", cmd_fit},
    {"predict", "score images with a model; write anomaly maps", cmd_predict},
    {"eval", "evaluate a model on an MVTec AD category (AUROC, AUPRO, F1)", cmd_eval},
    {"calibrate", "set a model's image and pixel thresholds from good (or labelled) images", cmd_calibrate},
    {"update", "add good images to a model without refitting", cmd_update},
    {"merge", "merge two compatible models' memory banks into one", cmd_merge},
#ifdef PC_HAVE_SERVE
    {"serve", "serve models over HTTP (predict, model info, health, metrics)", cmd_serve},
#endif
    {"benchmark", "fit and evaluate on MVTec AD categories; CSV + Markdown table", cmd_benchmark},
    {"preprocess", "write the normalised input tensor of one image (.npy)", cmd_preprocess},
    {"features", "write a backbone's layer activations for one image (.npy)", cmd_features},
    {"info", "describe a model file, or a weights file with --weights", cmd_info},
};

static void usage(FILE *out) {
    fprintf(out,
            "patchcore %s - PatchCore industrial anomaly detection\n"
            "\n"
            "usage: patchcore <verb> [options] [arguments]\n"
            "       patchcore --version | --help\n"
            "\n"
            "verbs:\n",
            pc_version());
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(out,
            "\n"
            "`patchcore <verb> --help` describes a verb's options and defaults.\n"
            "exit codes: 0 ok, 1 error, 2 bad command line, 3 some inputs failed, 4 anomaly found\n"
            "(with --fail-on-anomaly).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        print_version();
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].run(argc - 1, argv + 1);
#ifndef PC_HAVE_SERVE
    if (strcmp(argv[1], "serve") == 0) {
        cli_error("serve: this patchcore was built without libmicrohttpd (install libmicrohttpd-dev: "
                  "scripts/setup.sh, then rebuild)");
        return CLI_EXIT_ERROR;
    }
#endif
    cli_error("unknown verb '%s' (see patchcore --help)", argv[1]);
    return CLI_EXIT_USAGE;
}
