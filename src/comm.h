/*
 * comm.h - how the processes of a fit spread over several of them talk (docs/mpi.md). The library
 * links no MPI: mpi/comm.c implements these functions with MPI, and the sharded fit (fit_shard.c) and
 * the sharded greedy coreset (coreset.c) only call them. Not part of the public API.
 *
 * Every collective function must be called by every process, in the same order; all return PC_OK or
 * the transport's failure (with MPI's default error handler a transport failure ends the job instead).
 */
#ifndef PC_COMM_H
#define PC_COMM_H

#include "internal.h"

typedef struct pc_comm {
    int32_t rank, size;
    void *user;
    /* bytes from process root to every process */
    pc_status (*bcast)(void *user, void *buf, size_t bytes, int32_t root);
    /* every process's `bytes` bytes to every process: all holds size x bytes, in rank order */
    pc_status (*allgather)(void *user, const void *mine, void *all, size_t bytes);
    /* The greedy coreset's pick: in, this process's candidate (its distance *v, its global index *g,
     * -1 when it has none, and its projected row, proj_dim floats); out, on every process, the
     * candidate with the largest distance, the lowest index among equal distances, and its row. */
    pc_status (*argmax)(void *user, float *v, int64_t *g, float *row, int32_t proj_dim);
    /* the largest of every process's *v, on every process */
    pc_status (*max)(void *user, float *v);
    /* point to point, called by the two processes only */
    pc_status (*send)(void *user, const void *buf, size_t bytes, int32_t to);
    pc_status (*recv)(void *user, void *buf, size_t bytes, int32_t from);
} pc_comm;

/* Every process's status: PC_OK on every process when all passed PC_OK; otherwise, on every process,
 * the failure of the lowest-ranked failing process, its message prefixed "rank R of N: " (its own
 * message sent to the others). */
pc_status pc_comm_agree(const pc_comm *c, pc_status mine);

#endif
