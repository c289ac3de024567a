/*
 * fit_shard.h - a fit spread over processes (docs/mpi.md). Every process of comm calls
 * pc_model_fit_shard with the same options and the same sorted image list; process r extracts the
 * features of its share of the batches, the greedy coreset runs over all of them (coreset.c,
 * pc_coreset_greedy_shard), and the bank's rows go to process 0, which alone gets the model. The model
 * equals, bit for bit, pc_model_fit's with the same options on one process. Not part of the public API.
 */
#ifndef PC_FIT_SHARD_H
#define PC_FIT_SHARD_H

#include "comm.h"

/* What one process measured (seconds of wall time on that process). */
typedef struct pc_fit_shard_stats {
    double features_seconds;      /* its share's features (decoding, backbone, patch features) */
    double coreset_seconds;       /* the sampler over all processes' patches */
    double coreset_comm_seconds;  /* of which waiting for and making the reductions */
    double gather_seconds;        /* the bank's rows to process 0 (and, there, its norms and index) */
    int64_t picks;                /* reductions of the greedy loop: one per pick (start rows not counted) */
    int64_t images, rows;         /* its share: images given, patch rows that were candidates */
    int64_t bytes_sent, bytes_received; /* point-to-point payload of the gather */
} pc_fit_shard_stats;

/* The share of n images in batches of `batch` that process rank of size extracts: whole batches,
 * contiguous, [*lo, *hi) (empty when there are fewer batches than processes). */
void pc_fit_shard_range(size_t n, int32_t batch, int32_t rank, int32_t size, size_t *lo, size_t *hi);

/* The inputs are process 0's paths (sent to the others, whose own paths and n_paths are not used: a
 * host whose listing differs still takes its share of process 0's list). On process 0, *out is the
 * model (NULL elsewhere). An image a process cannot read (an I/O error) or decode for want of memory
 * fails the job, naming the process; one it reads but cannot decode is skipped, and reported on
 * process 0 only, through opt->on_image_error, in input order, after every process's features are
 * made. A failure on
 * any process is every process's result: the lowest failing rank's, its message starting "rank R of N:
 * ". Progress (opt->progress) is reported on each process that is given a callback: "features" for its
 * own share, then "coreset" for the whole loop (it cannot cancel there). Tiling and ensembles are not
 * available (PC_ERR_UNSUPPORTED). */
pc_status pc_model_fit_shard(const pc_fit_options *opt, const char *const *paths, size_t n_paths, const pc_comm *comm,
                             pc_model **out, pc_fit_shard_stats *stats);

#endif
