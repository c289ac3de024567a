/*
 * densenet.c - the DenseNet family: not yet (a placeholder the next commit fills).
 */
#include "family.h"

static int filter(const char *name, pc_bb_evidence *E) {
    (void)name, (void)E;
    return -1;
}
static int recognise(const pc_tensor_dict *d) {
    (void)d;
    return 0;
}
const pc_bb_family pc_family_densenet = {.name = "DenseNet", .slot = 1, .narchs = 0, .filter = filter,
                                         .recognise = recognise};
