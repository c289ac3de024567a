/*
 * inspect.c - pass/fail inspection on libpatchcore's public API: load a model file once, predict each
 * image given, and print one line per image: path, image score, normalised score and decision, plus
 * the anomalous regions (boxes in the image's own pixels) when the model has a pixel threshold.
 * Build it against an installed library:
 *
 *     cc inspect.c $(pkg-config --cflags --libs patchcore) -o inspect
 *     ./inspect bottle.pcm part1.png part2.png
 *
 * Exit status: 0 all good, 1 an error (the other images are still inspected), 4 at least one image
 * anomalous (the patchcore CLI's `predict --fail-on-anomaly` convention).
 */
#include <patchcore.h>

#include <math.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE...\n", argv[0]);
        return 2;
    }
    pc_model *model;
    if (pc_model_load(argv[1], &model) != PC_OK) {
        fprintf(stderr, "inspect: %s\n", pc_last_error());
        return 1;
    }
    pc_model_info info;
    pc_model_get_info(model, &info);
    const int calibrated = info.image_threshold == info.image_threshold; /* not NaN */
    const int regions = info.pixel_threshold == info.pixel_threshold;
    /* One map buffer, grown when an image needs a larger map (pc_model_map_size: crop x crop, or the
     * image's size for a tiled model). */
    size_t cap = (size_t)info.crop * (size_t)info.crop;
    float *map = malloc(sizeof(float) * cap);
    if (!map) {
        pc_model_free(model);
        return 1;
    }
    int errors = 0, anomalous = 0;
    for (int i = 2; i < argc; i++) {
        pc_prediction pred;
        pc_geometry geom;
        pc_image img;
        int32_t mw, mh;
        if (pc_image_load(argv[i], &img) != PC_OK ||
            pc_model_map_size(model, img.width, img.height, NULL, &mw, &mh) != PC_OK) {
            fprintf(stderr, "inspect: %s\n", pc_last_error());
            pc_image_free(&img);
            errors++;
            continue;
        }
        if ((size_t)mw * (size_t)mh > cap) {
            float *grown = realloc(map, sizeof(float) * (size_t)mw * (size_t)mh);
            if (!grown) {
                fprintf(stderr, "inspect: %s: out of memory for its map\n", argv[i]);
                pc_image_free(&img);
                errors++;
                continue;
            }
            map = grown, cap = (size_t)mw * (size_t)mh;
        }
        pc_status st = pc_model_predict(model, &img, &pred, map, &geom);
        pc_image_free(&img);
        if (st != PC_OK) {
            fprintf(stderr, "inspect: %s: %s\n", argv[i], pc_last_error());
            errors++;
            continue;
        }
        printf("%s score %.9g", argv[i], (double)pred.score);
        if (calibrated) printf(" normalized %.6f %s", pred.normalized, pred.anomalous ? "ANOMALOUS" : "ok");
        anomalous += calibrated && pred.anomalous;
        if (regions) {
            pc_region reg[4];
            int32_t n = 0;
            if (pc_model_regions(model, map, &geom, NAN, reg, 4, &n) == PC_OK)
                for (int32_t r = 0; r < n && r < 4; r++)
                    printf(" region [%d,%d,%d,%d] peak %.4g", (int)reg[r].x0, (int)reg[r].y0, (int)reg[r].x1,
                           (int)reg[r].y1, (double)reg[r].peak);
        }
        printf("\n");
    }
    free(map);
    pc_model_free(model);
    return errors ? 1 : anomalous ? 4 : 0;
}
