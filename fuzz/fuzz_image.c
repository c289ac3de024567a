/*
 * fuzz_image.c - libFuzzer target for image decoding (PNG/JPEG via pc_image_load_memory) followed by
 * pc_preprocess on whatever decoded. Built and run by `make fuzz` (see docs/robustness.md).
 *
 * Every input must give either an RGB image or a clean error naming the input; no crash, leak or
 * undefined behaviour. Decoded images are preprocessed at a small size derived from the input's
 * length so that resize/crop geometry (including crops larger than the resized image) is exercised.
 */
#include "patchcore.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pc_image img;
    pc_status st = pc_image_load_memory(data, size, "fuzz", &img);
    if (st != PC_OK) {
        if (img.data != NULL || strstr(pc_last_error(), "fuzz") == NULL) abort();
        return 0;
    }
    if (img.channels != 3 || img.width <= 0 || img.height <= 0) abort();
    /* Keep the work per input small: skip preprocessing of very large decodes. */
    if ((int64_t)img.width * img.height <= 4096 * 4096) {
        int32_t resize = 8 + (int32_t)(size % 40), crop = 4 + (int32_t)(size % 52);
        float *out = malloc(sizeof(float) * 3 * (size_t)crop * (size_t)crop);
        if (out) {
            pc_geometry g;
            if (pc_preprocess(out, &img, resize, crop, &g) != PC_OK) abort();
            free(out);
        }
    }
    pc_image_free(&img);
    return 0;
}
