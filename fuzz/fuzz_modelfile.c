/*
 * fuzz_modelfile.c - libFuzzer target for the model-file container reader (pc_modelfile_open_memory).
 *
 * The reader requires a 64-byte aligned buffer (a real file is memory-mapped), so the input is
 * copied into one. Every input must give either a valid handle, whose every tensor lies inside the
 * buffer and whose metadata can be read, or a clean error naming the input.
 */
#include "modelfile.h"
#include "internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = aligned_alloc(64, (size + 64) & ~(size_t)63);
    if (buf == NULL) return 0;
    memcpy(buf, data, size);
    pc_modelfile *mf = NULL;
    pc_status st = pc_modelfile_open_memory(buf, size, "fuzz", &mf);
    if (st == PC_OK) {
        (void)pc_modelfile_version(mf);
        volatile size_t n = strlen(pc_modelfile_meta_text(mf));
        (void)n;
        (void)pc_modelfile_meta(mf, "backbone");
        for (size_t i = 0; i < pc_modelfile_tensor_count(mf); i++) {
            const pc_mf_tensor *t = pc_modelfile_tensor_at(mf, i);
            const uint8_t *p = t->data;
            if (t->nbytes > 0 && (p < buf || p + t->nbytes > buf + size)) abort();
            volatile uint8_t acc = 0;
            for (uint64_t k = 0; k < t->nbytes; k++) acc ^= p[k]; /* touch every byte */
            if (pc_modelfile_tensor(mf, t->name) == NULL) abort();
        }
        pc_modelfile_close(mf);
    } else if (mf != NULL || strstr(pc_last_error(), "fuzz") == NULL) {
        abort();
    }
    free(buf);
    return 0;
}
