/*
 * layer_names.c - the names of backbone layers across families: ResNets' layer1..layer4 and
 * DenseNets' features.denseblock1..4 share the numbers 1..4 (and so the layer masks).
 */
#include "internal.h"

#include <string.h>

int pc_arch_is_densenet(pc_arch arch) {
    return arch == PC_ARCH_DENSENET121 || arch == PC_ARCH_DENSENET161 || arch == PC_ARCH_DENSENET169 ||
           arch == PC_ARCH_DENSENET201;
}

/* "N" with N in 1..4 and nothing after it: N, else 0. */
static int32_t digit(const char *p) { return p[0] >= '1' && p[0] <= '4' && p[1] == '\0' ? p[0] - '0' : 0; }

int32_t pc_layer_from_name(pc_arch arch, const char *name) {
    if (!name) return 0;
    const int dense = pc_arch_is_densenet(arch);
    if (strncmp(name, "features.", 9) == 0) {
        if (strncmp(name + 9, "denseblock", 10) != 0) return 0;
        name += 9;
    }
    if (strncmp(name, "denseblock", 10) == 0) return arch == PC_ARCH_UNKNOWN || dense ? digit(name + 10) : 0;
    if (strncmp(name, "layer", 5) == 0) return arch == PC_ARCH_UNKNOWN || !dense ? digit(name + 5) : 0;
    return digit(name);
}

const char *pc_layer_name(pc_arch arch, int32_t n) {
    static const char *const resnet[4] = {"layer1", "layer2", "layer3", "layer4"};
    static const char *const dense[4] = {"denseblock1", "denseblock2", "denseblock3", "denseblock4"};
    if (n < 1 || n > 4) return "";
    return pc_arch_is_densenet(arch) ? dense[n - 1] : resnet[n - 1];
}
