/*
 * backbone_macs.h - multiply-adds of a torchvision ResNet-family or DenseNet forward (stem, then stages up to
 * `deepest`) on an s x s input, worked out from the architecture's definition: the benchmarks' FLOP
 * counts (2 per multiply-add) for GFLOP/s and floors. wide_resnet50_2 to layer3 at 224: 9.19 GMAC.
 */
#ifndef PC_BENCH_BACKBONE_MACS_H
#define PC_BENCH_BACKBONE_MACS_H

#include "patchcore.h"

/* Multiply-adds of a torchvision DenseNet up to denseblock `deepest` (the transitions between, as
 * torchvision runs them: 1x1 convolution, then the average pool). */
static inline double densenet_macs(pc_arch a, int deepest, int s) {
    static const int cfg[4][6] = {{32, 64, 6, 12, 24, 16}, {48, 96, 6, 12, 36, 24}, {32, 64, 6, 12, 32, 32},
                                  {32, 64, 6, 12, 48, 32}}; /* growth, init, layers per block */
    const int *c = cfg[a - PC_ARCH_DENSENET121], g = c[0];
    int h = (s + 6 - 7) / 2 + 1;
    double macs = (double)h * h * c[1] * 3 * 49;
    h = (h + 2 - 3) / 2 + 1;
    int cin = c[1];
    for (int b = 0; b < deepest; b++) {
        for (int l = 0; l < c[2 + b]; l++, cin += g)
            macs += (double)h * h * 4 * g * cin + (double)h * h * g * 4 * g * 9; /* 1x1, 3x3 */
        if (b + 1 < deepest) {
            macs += (double)h * h * (cin / 2) * cin; /* transition 1x1 */
            cin /= 2, h /= 2;
        }
    }
    return macs;
}

/* Multiply-adds of a torchvision ResNet family forward up to layer `deepest` on an s x s input. */
static inline double backbone_macs(pc_arch a, int deepest, int s) {
    if (pc_arch_is_densenet(a)) return densenet_macs(a, deepest, s);
    static const int blocks[][4] = {{0}, {2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 8, 36, 3},
                                    {3, 4, 6, 3}, {3, 4, 23, 3}, {3, 4, 6, 3}, {3, 4, 23, 3}};
    if (a <= PC_ARCH_UNKNOWN || a > PC_ARCH_RESNEXT101_32X8D) return 0;
    const int bottleneck = a != PC_ARCH_RESNET18 && a != PC_ARCH_RESNET34;
    int groups = 1;
    double wmul = 1; /* width of the 3x3 conv in a bottleneck, over `planes` */
    if (a == PC_ARCH_WIDE_RESNET50_2 || a == PC_ARCH_WIDE_RESNET101_2) wmul = 2;
    if (a == PC_ARCH_RESNEXT50_32X4D) wmul = 2, groups = 32;
    if (a == PC_ARCH_RESNEXT101_32X8D) wmul = 4, groups = 32;
    int h = (s + 6 - 7) / 2 + 1;
    double macs = (double)h * h * 64 * 3 * 49;
    h = (h + 2 - 3) / 2 + 1;
    int cin = 64;
    for (int st = 0; st < deepest; st++) {
        const int planes = 64 << st, cout = bottleneck ? planes * 4 : planes;
        for (int b = 0; b < blocks[a][st]; b++) {
            const int stride = (st > 0 && b == 0) ? 2 : 1;
            const int ho = (h + 2 - 3) / stride + 1;
            if (bottleneck) {
                const int w = (int)(planes * wmul);
                macs += (double)h * h * w * cin;                       /* 1x1 */
                macs += (double)ho * ho * w * (w / groups) * 9;        /* 3x3 (strided) */
                macs += (double)ho * ho * cout * w;                    /* 1x1 */
            } else {
                macs += (double)ho * ho * planes * cin * 9 + (double)ho * ho * planes * planes * 9;
            }
            if (stride != 1 || cin != cout) macs += (double)ho * ho * cout * cin; /* downsample 1x1 */
            cin = cout, h = ho;
        }
    }
    return macs;
}

#endif
