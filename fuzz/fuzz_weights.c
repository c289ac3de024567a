/*
 * fuzz_weights.c - libFuzzer target for the weights reader (.pth zip/legacy, .safetensors).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc fuzz/fuzz_weights.c src/weights.c \
 *         src/status.c -lz -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -o build/fuzz_weights
 *   build/fuzz_weights -max_total_time=120 CORPUS_DIR build/ref/weights   (seeds: the test files)
 *
 * Every input must give either a dictionary or a clean error naming the input; no crash, leak or
 * undefined behaviour. Half of the inputs go through a filter that keeps every other tensor.
 */
#include "weights.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int every_other(const char *name, void *user) {
    (void)name;
    return ((*(int *)user)++ & 1) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int counter = 0;
    pc_tensor_dict *d = NULL;
    pc_status st = pc_weights_load_memory(data, size, "fuzz", size & 1 ? every_other : NULL, &counter, &d);
    if (st == PC_OK) {
        for (size_t i = 0; i < d->count; i++) {
            const pc_tensor *t = &d->tensors[i];
            volatile float acc = 0;
            if (t->data)
                for (int64_t k = 0; k < t->numel; k++) acc += t->data[k]; /* touch every value */
        }
        pc_tensor_dict_free(d);
    } else if (d != NULL || strncmp(pc_last_error(), "fuzz", 4) != 0) {
        abort();
    }
    return 0;
}
