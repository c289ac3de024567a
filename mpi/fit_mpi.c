/*
 * fit_mpi.c - `patchcore fit` over MPI (fit_mpi.h, docs/mpi.md): MPI_Init, the sharded fit of
 * src/fit_shard.c over MPI_COMM_WORLD, and the job's measurements gathered for process 0's summary.
 */
#include "fit_mpi.h"
#include "comm_mpi.h"
#include "fit_shard.h"

#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int started;

/* When another process of the job dies (killed, or exiting without MPI_Finalize), the launcher ends the
 * others with SIGTERM (Open MPI's mpirun and MPICH's Hydra do): process 0 then says so before it goes,
 * the launcher's own message naming the process that died. Async-signal-safe: write(2) and _exit. */
static void on_term(int sig) {
    static const char msg[] = "patchcore: fit: ended by the MPI launcher during the fit: another process of the "
                              "job died (the launcher's message names it); no model was written\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(128 + sig);
}

int cli_mpi_start(int32_t *rank, int32_t *size) {
    if (!started) {
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited && MPI_Init(NULL, NULL) != MPI_SUCCESS) {
            fprintf(stderr, "patchcore: fit: MPI_Init failed\n");
            return 1;
        }
        started = 1;
    }
    int r = 0, n = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    *rank = r, *size = n;
    if (r == 0 && n > 1) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
    }
    return 0;
}

void cli_mpi_fit_done(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &sa, NULL);
}

void cli_mpi_end(void) {
    if (started) MPI_Finalize();
    started = 0;
}

pc_status cli_mpi_fit(const pc_fit_options *opt, const char *const *paths, size_t n_paths, pc_model **out,
                      cli_mpi_report *report) {
    comm_mpi c;
    comm_mpi_init(&c);
    pc_fit_shard_stats s;
    pc_status st = pc_model_fit_shard(opt, paths, n_paths, &c.comm, out, &s);
    memset(report, 0, sizeof *report);
    report->rank = c.comm.rank, report->size = c.comm.size;
    /* the slowest and the fastest process's features (not counted as the fit's communication) */
    double fmax = s.features_seconds, fmin = s.features_seconds;
    MPI_Reduce(&s.features_seconds, &fmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&s.features_seconds, &fmin, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    report->features_seconds = fmax, report->features_min_seconds = fmin;
    report->coreset_seconds = s.coreset_seconds, report->coreset_comm_seconds = s.coreset_comm_seconds;
    report->gather_seconds = s.gather_seconds;
    report->comm_seconds = c.seconds, report->comm_bytes = c.bytes;
    report->picks = s.picks;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len);
    /* its first line up to a comma, blanks (MPICH puts a tab after "Version:") as single spaces */
    size_t o = 0;
    for (int i = 0; i < len && lib[i] && lib[i] != '\n' && lib[i] != ',' && o + 1 < sizeof report->library; i++) {
        const int blank = lib[i] == ' ' || lib[i] == '\t' || lib[i] == '\r';
        if (blank && (o == 0 || report->library[o - 1] == ' ')) continue;
        report->library[o++] = blank ? ' ' : lib[i];
    }
    while (o && report->library[o - 1] == ' ') o--;
    report->library[o] = '\0';
    comm_mpi_free(&c);
    cli_mpi_fit_done(); /* past the last message between processes: a SIGTERM now is the user's */
    return st;
}
