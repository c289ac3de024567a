/*
 * cmd_merge.c - `patchcore merge A B -o C`: one model whose memory bank is A's followed by B's, for two
 * models with the same backbone and feature settings (pc_model_merge, docs/update.md).
 */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: patchcore merge A.pcm B.pcm -o C.pcm\n"
            "\n"
            "Merge two models fitted on different good images (two lots, two lines) into one: C's memory bank\n"
            "is every entry of A followed by every entry of B, so a patch's score under C is the smaller of\n"
            "its scores under A and B (k = 1). A and B must have the same backbone (architecture and every\n"
            "weight, bit for bit) and feature settings (layers, resize, crop, patch, dimensions, k,\n"
            "batch-norm statistics, precision, reweighting); otherwise merge refuses and names the first\n"
            "difference. C keeps A's coreset settings (for later updates) and A's thresholds, flagged stale:\n"
            "recalibrate C (patchcore calibrate). C is written atomically; A and B are not changed.\n"
            "\n"
            "options:\n"
            "  -o, --out FILE   the merged model (required; may be A to merge B into it)\n"
            "  --json           print the summary as one JSON object\n"
            "  -h, --help       this help\n"
            "\n"
            "exit codes: 0 ok, 1 failure (incompatible models, unreadable files; nothing written), 2 usage\n");
}

int cmd_merge(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        help(stdout);
        return CLI_EXIT_OK;
    }
    const char *in[2] = {NULL, NULL}, *out = NULL;
    int n_in = 0;
    bool json = false;
    pc_model *a = NULL, *b = NULL;
    int rc = CLI_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-o") == 0 || cli_match(arg, "--out")) {
            if (!cli_take_value(argc, argv, &i, arg[1] == 'o' ? "-o" : "--out", &out)) goto out;
        } else if (strcmp(arg, "--json") == 0) {
            json = true;
        } else if (arg[0] == '-' && arg[1]) {
            cli_error("merge: unknown option '%s' (see patchcore merge --help)", arg);
            goto out;
        } else if (n_in < 2) {
            in[n_in++] = arg;
        } else {
            cli_error("merge: merges two models, not more (merge the result with the next)");
            goto out;
        }
    }
    if (n_in != 2 || !out) {
        cli_error("merge: needs two models and -o OUT (see patchcore merge --help)");
        goto out;
    }
    if (cli_parse_only) {
        rc = CLI_EXIT_OK;
        goto out;
    }
    rc = CLI_EXIT_ERROR;
    pc_status st = pc_model_load(in[0], &a);
    if (!st) st = pc_model_load(in[1], &b);
    if (st) {
        cli_error_status(st, "merge");
        goto out;
    }
    pc_update_report rep;
    if ((st = pc_model_merge(a, b, &rep)) != PC_OK) {
        cli_error("%s (A = %s, B = %s)", pc_last_error(), in[0], in[1]);
        goto out;
    }
    if ((st = pc_model_save(a, out)) != PC_OK) {
        cli_error_status(st, "merge");
        goto out;
    }
    pc_model_info info;
    pc_model_get_info(a, &info);
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, out);
        printf(", \"bank_size\": %lld, \"added\": %lld, \"n_train_images\": %d, \"coverage_radius\": ",
               (long long)info.bank_size, (long long)rep.n_added, (int)info.n_train_images);
        if (isnan(info.coverage_radius)) printf("null");
        else printf("%.9g", info.coverage_radius);
        printf(", \"thresholds_stale\": %s}\n", info.thresholds_stale ? "true" : "false");
    } else {
        printf("merged %s (%lld entries) and %s (%lld entries): %lld entries from %d images\n", in[0],
               (long long)(info.bank_size - rep.n_added), in[1], (long long)rep.n_added, (long long)info.bank_size,
               (int)info.n_train_images);
        if (info.thresholds_stale) printf("thresholds are stale: recalibrate (patchcore calibrate)\n");
        printf("written to %s\n", out);
    }
    rc = CLI_EXIT_OK;
out:
    pc_model_free(a);
    pc_model_free(b);
    return rc;
}
