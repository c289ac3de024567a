/*
 * comm_mpi.c - the sharded fit's communicator (src/comm.h) over MPI_COMM_WORLD, with the time and bytes
 * each process spends in it. Standard MPI-3 only (Open MPI and MPICH).
 */
#include "comm_mpi.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double now_seconds(void) { return MPI_Wtime(); }

static pc_status mpi_failed(int rc, const char *what) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return pc_fail(PC_ERR_IO, "MPI %s failed: %.*s", what, len, text);
}

/* MPI counts are ints: messages of more than 1 GiB go in pieces */
#define PIECE ((size_t)1 << 30)

static pc_status c_bcast(void *user, void *buf, size_t bytes, int32_t root) {
    comm_mpi *c = user;
    double t0 = now_seconds();
    int rc = MPI_SUCCESS;
    for (size_t o = 0; o < bytes && rc == MPI_SUCCESS; o += PIECE)
        rc = MPI_Bcast((char *)buf + o, (int)(bytes - o < PIECE ? bytes - o : PIECE), MPI_BYTE, root, MPI_COMM_WORLD);
    c->seconds += now_seconds() - t0;
    c->bytes += (int64_t)bytes;
    return rc == MPI_SUCCESS ? PC_OK : mpi_failed(rc, "broadcast");
}

static pc_status c_allgather(void *user, const void *mine, void *all, size_t bytes) {
    comm_mpi *c = user;
    if (bytes > (size_t)INT_MAX) return pc_fail(PC_ERR_TOO_LARGE, "MPI allgather of %zu bytes", bytes);
    double t0 = now_seconds();
    int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    c->seconds += now_seconds() - t0;
    c->bytes += (int64_t)(bytes * (size_t)c->comm.size);
    return rc == MPI_SUCCESS ? PC_OK : mpi_failed(rc, "allgather");
}

/* The pick's reduction element: distance, global index, projected row (proj_dim floats). */
typedef struct pick {
    float v;
    int32_t pad;
    int64_t g;
    float row[];
} pick;

/* the larger distance; on equal distances the lower index; a process without a candidate (g = -1) never
 * wins over one with a candidate. Commutative and associative: the winner is the same in any order. */
static void pick_op(void *in, void *inout, int *len, MPI_Datatype *type) {
    int size = 0;
    MPI_Type_size(*type, &size);
    const size_t pick_bytes = (size_t)size;
    for (int i = 0; i < *len; i++) {
        const pick *a = (const pick *)((const char *)in + (size_t)i * pick_bytes);
        pick *b = (pick *)((char *)inout + (size_t)i * pick_bytes);
        const int take = a->g >= 0 && (b->g < 0 || a->v > b->v || (a->v == b->v && a->g < b->g));
        if (take) memcpy(b, a, pick_bytes);
    }
}

static pc_status c_argmax(void *user, float *v, int64_t *g, float *row, int32_t proj_dim) {
    comm_mpi *c = user;
    const size_t bytes = sizeof(pick) + sizeof(float) * (size_t)proj_dim;
    if (c->pick_dim != proj_dim) {
        if (c->pick_type != MPI_DATATYPE_NULL) MPI_Type_free(&c->pick_type);
        free(c->pick_in), free(c->pick_out);
        c->pick_in = malloc(bytes), c->pick_out = malloc(bytes);
        if (!c->pick_in || !c->pick_out) { /* the others are already in the reduction: end the job */
            fprintf(stderr, "patchcore: fit: rank %d of %d: out of memory for a %zu-byte message\n", (int)c->comm.rank,
                    (int)c->comm.size, bytes);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        MPI_Type_contiguous((int)bytes, MPI_BYTE, &c->pick_type);
        MPI_Type_commit(&c->pick_type);
        c->pick_dim = proj_dim;
    }
    pick *p = c->pick_in;
    p->v = *v, p->pad = 0, p->g = *g;
    memcpy(p->row, row, sizeof(float) * (size_t)proj_dim);
    double t0 = now_seconds();
    int rc = MPI_Allreduce(p, c->pick_out, 1, c->pick_type, c->pick_op, MPI_COMM_WORLD);
    c->seconds += now_seconds() - t0;
    c->bytes += (int64_t)bytes;
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "allreduce");
    const pick *w = c->pick_out;
    *v = w->v, *g = w->g;
    memcpy(row, w->row, sizeof(float) * (size_t)proj_dim);
    return PC_OK;
}

static pc_status c_max(void *user, float *v) {
    comm_mpi *c = user;
    float in = *v;
    double t0 = now_seconds();
    int rc = MPI_Allreduce(&in, v, 1, MPI_FLOAT, MPI_MAX, MPI_COMM_WORLD);
    c->seconds += now_seconds() - t0;
    c->bytes += (int64_t)sizeof in;
    return rc == MPI_SUCCESS ? PC_OK : mpi_failed(rc, "allreduce");
}

static pc_status c_send(void *user, const void *buf, size_t bytes, int32_t to) {
    comm_mpi *c = user;
    double t0 = now_seconds();
    int rc = MPI_SUCCESS;
    for (size_t o = 0; o < bytes && rc == MPI_SUCCESS; o += PIECE)
        rc = MPI_Send((const char *)buf + o, (int)(bytes - o < PIECE ? bytes - o : PIECE), MPI_BYTE, to, 0,
                      MPI_COMM_WORLD);
    c->seconds += now_seconds() - t0;
    c->bytes += (int64_t)bytes;
    return rc == MPI_SUCCESS ? PC_OK : mpi_failed(rc, "send");
}

static pc_status c_recv(void *user, void *buf, size_t bytes, int32_t from) {
    comm_mpi *c = user;
    double t0 = now_seconds();
    int rc = MPI_SUCCESS;
    for (size_t o = 0; o < bytes && rc == MPI_SUCCESS; o += PIECE)
        rc = MPI_Recv((char *)buf + o, (int)(bytes - o < PIECE ? bytes - o : PIECE), MPI_BYTE, from, 0, MPI_COMM_WORLD,
                      MPI_STATUS_IGNORE);
    c->seconds += now_seconds() - t0;
    c->bytes += (int64_t)bytes;
    return rc == MPI_SUCCESS ? PC_OK : mpi_failed(rc, "receive");
}

void comm_mpi_init(comm_mpi *c) {
    memset(c, 0, sizeof *c);
    int r = 0, n = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    c->comm = (pc_comm){.rank = r, .size = n, .user = c, .bcast = c_bcast, .allgather = c_allgather,
                        .argmax = c_argmax, .max = c_max, .send = c_send, .recv = c_recv};
    c->pick_type = MPI_DATATYPE_NULL;
    MPI_Op_create(pick_op, 1, &c->pick_op);
}

void comm_mpi_free(comm_mpi *c) {
    if (c->pick_type != MPI_DATATYPE_NULL) MPI_Type_free(&c->pick_type);
    MPI_Op_free(&c->pick_op);
    free(c->pick_in), free(c->pick_out);
}
