/*
 * bench_augment.c - the data behind bench/fit_large.sh: COUNT training images made from the PNG/JPEG
 * files of SRC_DIR (sorted by name) with flips and small shifts, written as PNG to OUT_DIR with our own
 * decoder and writer. Image k is source k % n, variant v = k / n: flip v % 4 (none, horizontal,
 * vertical, both) then a shift by SHIFTS[(v / 4) % 4] pixels (edge pixels repeated), so every output
 * differs from the others while staying a plausible good part.
 *
 *   build/bench_augment SRC_DIR OUT_DIR COUNT
 */
#include "cpuinfo.h"
#include "patchcore.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int SHIFTS[4][2] = {{0, 0}, {12, 8}, {-8, 12}, {10, -10}};

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image(const char *n) {
    const char *d = strrchr(n, '.');
    return d && (!strcmp(d, ".png") || !strcmp(d, ".jpg") || !strcmp(d, ".jpeg"));
}

/* out(x, y) = in(clamp(fx(x) - dx), clamp(fy(y) - dy)), fx/fy the flips */
static void transform(pc_image *out, const pc_image *in, int flip, int dx, int dy) {
    const int W = in->width, H = in->height, C = in->channels;
    for (int y = 0; y < H; y++) {
        int sy = y - dy;
        sy = sy < 0 ? 0 : sy >= H ? H - 1 : sy;
        if (flip & 2) sy = H - 1 - sy;
        for (int x = 0; x < W; x++) {
            int sx = x - dx;
            sx = sx < 0 ? 0 : sx >= W ? W - 1 : sx;
            if (flip & 1) sx = W - 1 - sx;
            memcpy(out->data + ((size_t)y * W + x) * C, in->data + ((size_t)sy * W + sx) * C, (size_t)C);
        }
    }
}

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    if (argc != 4) {
        fprintf(stderr, "usage: %s SRC_DIR OUT_DIR COUNT\n", argv[0]);
        return 2;
    }
    const char *src = argv[1], *dst = argv[2];
    long count = atol(argv[3]);
    DIR *d = opendir(src);
    if (!d || count < 1) {
        fprintf(stderr, "bench_augment: cannot read %s or bad COUNT\n", src);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_image(e->d_name)) continue;
        if (n == cap) names = realloc(names, (cap = cap ? 2 * cap : 256) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "bench_augment: no images in %s\n", src);
        return 1;
    }
    qsort(names, n, sizeof *names, cmp_str);
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : failed)
    for (long k = 0; k < count; k++) {
        char in_path[4096], out_path[4096];
        const long v = k / (long)n;
        snprintf(in_path, sizeof in_path, "%s/%s", src, names[k % (long)n]);
        snprintf(out_path, sizeof out_path, "%s/%05ld.png", dst, k);
        pc_image in = {0}, out;
        if (pc_image_load(in_path, &in) != PC_OK) {
            fprintf(stderr, "bench_augment: %s\n", pc_last_error());
            failed++;
            continue;
        }
        out = in;
        out.data = malloc((size_t)in.width * in.height * in.channels);
        if (!out.data) {
            failed++;
        } else {
            transform(&out, &in, (int)(v % 4), SHIFTS[(v / 4) % 4][0], SHIFTS[(v / 4) % 4][1]);
            if (pc_image_write_png(out_path, &out) != PC_OK) {
                fprintf(stderr, "bench_augment: %s\n", pc_last_error());
                failed++;
            }
            free(out.data);
        }
        pc_image_free(&in);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return failed ? 1 : 0;
}
