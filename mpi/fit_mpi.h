/*
 * fit_mpi.h - `patchcore fit` spread over MPI processes (docs/mpi.md): the CLI's side of the sharded fit
 * (src/fit_shard.c), built only with `make MPI=1` (CMake PC_MPI, which defines PC_HAVE_MPI).
 */
#ifndef PC_FIT_MPI_H
#define PC_FIT_MPI_H

#include "patchcore.h"

#include <stdint.h>

/* What the job measured, for fit's summary (process 0's view; features: the slowest process). */
typedef struct cli_mpi_report {
    int32_t rank, size;
    double features_seconds;      /* the slowest process's features */
    double features_min_seconds;  /* the fastest's */
    double coreset_seconds, coreset_comm_seconds, gather_seconds;
    double comm_seconds;          /* process 0's time inside MPI calls, every phase */
    int64_t comm_bytes;           /* bytes process 0 sent and received, every phase */
    int64_t picks;
    char library[128];            /* MPI_Get_library_version's first line */
} cli_mpi_report;

/* MPI_Init (once); *rank and *size of MPI_COMM_WORLD. Returns 0, or non-zero after printing why. */
int cli_mpi_start(int32_t *rank, int32_t *size);

/* The sharded fit over MPI_COMM_WORLD: every process calls it with the same options and list; *out is
 * the model on process 0 (NULL elsewhere). The status is every process's (fit_shard.h). */
pc_status cli_mpi_fit(const pc_fit_options *opt, const char *const *paths, size_t n_paths, pc_model **out,
                      cli_mpi_report *report);

/* The end of the part of the job where another process's death ends this one (SIGTERM's default
 * action again; cli_mpi_fit calls it). */
void cli_mpi_fit_done(void);

/* MPI_Finalize, when cli_mpi_start ran. */
void cli_mpi_end(void);

#endif
