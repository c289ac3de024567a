/*
 * comm_mpi.h - src/comm.h's communicator over MPI_COMM_WORLD (after MPI_Init).
 */
#ifndef PC_COMM_MPI_H
#define PC_COMM_MPI_H

#include "comm.h"

#include <mpi.h>

typedef struct comm_mpi {
    pc_comm comm;       /* what the library calls; user points back here */
    double seconds;     /* time inside MPI calls */
    int64_t bytes;      /* payload this process sent or received (a collective counts its own share) */
    MPI_Op pick_op;
    MPI_Datatype pick_type;
    int32_t pick_dim;
    void *pick_in, *pick_out;
} comm_mpi;

void comm_mpi_init(comm_mpi *c);
void comm_mpi_free(comm_mpi *c);

#endif
