/*
 * fuzz_cli.c - libFuzzer target for the command-line parsers of `patchcore fit` and `predict`.
 *
 * The input is split at NUL bytes into up to 64 arguments (each its own heap copy, so ASan sees any
 * read past an argument's end); its first byte picks the verb. cli_parse_only makes the verbs return
 * right after checking their command line, and keeps cli_collect_images off the disk, so nothing is
 * read or written. Every input must return one of the CLI exit codes without a crash or leak.
 */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int cmd_fit(int argc, char **argv);
int cmd_predict(int argc, char **argv);

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    cli_parse_only = true;
    int use_fit = data[0] & 1;
    data++, size--;
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = strdup(use_fit ? "fit" : "predict");
    size_t start = 0;
    for (size_t i = 0; i <= size && argc < MAX_ARGS; i++) {
        if (i == size || data[i] == 0) {
            char *a = malloc(i - start + 1);
            if (!a) break;
            memcpy(a, data + start, i - start);
            a[i - start] = 0;
            argv[argc++] = a;
            start = i + 1;
        }
    }
    argv[argc] = NULL;
    int rc = use_fit ? cmd_fit(argc, argv) : cmd_predict(argc, argv);
    if (rc != CLI_EXIT_OK && rc != CLI_EXIT_ERROR && rc != CLI_EXIT_USAGE) abort();
    for (int i = 0; i < argc; i++) free(argv[i]);
    return 0;
}
