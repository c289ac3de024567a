/*
 * comm.c - agreeing on a status between the processes of a sharded fit (comm.h, docs/mpi.md).
 */
#include "comm.h"

#include <stdio.h>

pc_status pc_comm_agree(const pc_comm *c, pc_status mine) {
    /* the lowest failing rank, by one maximum: a failing rank r offers size - r (exact in a float for
     * up to 2^24 processes), the others 0 */
    float key = mine != PC_OK ? (float)(c->size - c->rank) : 0.0f;
    pc_status st = c->max(c->user, &key);
    if (st) return st;
    if (key == 0.0f) return PC_OK;
    const int32_t q = c->size - (int32_t)key;
    struct {
        int32_t status;
        char msg[PC_ERRMSG_MAX];
    } what = {(int32_t)mine, ""};
    if (c->rank == q) snprintf(what.msg, sizeof what.msg, "%s", pc_last_error());
    st = c->bcast(c->user, &what, sizeof what, q);
    if (st) return st;
    what.msg[sizeof what.msg - 1] = '\0';
    return pc_fail((pc_status)what.status, "rank %d of %d: %s", (int)q, (int)c->size, what.msg);
}
