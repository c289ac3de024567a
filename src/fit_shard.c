/*
 * fit_shard.c - a fit spread over processes (fit_shard.h, docs/mpi.md).
 *
 * Why the model is the single-process one bit for bit:
 *  - features: a process extracts whole batches of the sorted list, the batches one process makes, with
 *    the same code (pc_model_extract_part); an image's rows and their coreset projection do not depend
 *    on the other images of its batch or on the thread count (docs/robustness.md);
 *  - candidates: process q's rows are the global rows [offsets[q], offsets[q+1]), in the order one
 *    process lays them out (usable images in input order, each image's patches in order; with a region
 *    of interest, the inside patches only), so a global index means the same row;
 *  - the greedy loop: every process computes its rows' distances with the single-process code, and the
 *    reduction keeps the single-process tie rule (largest distance, lowest index);
 *  - random and none need only the number of candidates; the bank is gathered in selection order.
 */
#include "fit_shard.h"
#include "coreset.h"
#include "model_impl.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void pc_fit_shard_range(size_t n, int32_t batch, int32_t rank, int32_t size, size_t *lo, size_t *hi) {
    const uint64_t nb = (n + (size_t)batch - 1) / (size_t)batch;
    const uint64_t b0 = nb * (uint64_t)rank / (uint64_t)size, b1 = nb * (uint64_t)(rank + 1) / (uint64_t)size;
    *lo = (size_t)PC_MIN(b0 * (uint64_t)batch, (uint64_t)n);
    *hi = (size_t)PC_MIN(b1 * (uint64_t)batch, (uint64_t)n);
}

/* An unusable image, kept to be reported by process 0 (fixed size: sent as bytes). */
typedef struct bad_image {
    int64_t index; /* into the whole list */
    int32_t status;
    char message[500];
} bad_image;

typedef struct bad_list {
    bad_image *v;
    int64_t n, cap;
    size_t lo, hi; /* this process's images */
    const char *const *paths;
    int failed; /* out of memory while recording */
} bad_list;

static void record_bad(void *user, const char *path, pc_status status, const char *message) {
    bad_list *l = user;
    if (l->n == l->cap) {
        int64_t nc = l->cap ? 2 * l->cap : 16;
        bad_image *nv = pc_malloc((size_t)nc * sizeof *nv);
        if (!nv) {
            l->failed = 1;
            return;
        }
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
        pc_free(l->v);
        l->v = nv, l->cap = nc;
    }
    bad_image *b = &l->v[l->n++];
    memset(b, 0, sizeof *b);
    b->index = -1; /* the path names the image: find its index in the whole list */
    for (size_t i = l->lo; path && i < l->hi && b->index < 0; i++)
        if (l->paths[i] == path || strcmp(l->paths[i], path) == 0) b->index = (int64_t)i;
    b->status = (int32_t)status;
    snprintf(b->message, sizeof b->message, "%s", message ? message : "");
}

/* Process 0 reports every process's unusable images in input order (the shares are in rank order),
 * one message per image. */
static pc_status report_bad(const pc_comm *c, const pc_fit_options *opt, const bad_list *l, const char *const *paths) {
    int64_t *counts = pc_calloc((size_t)c->size, sizeof *counts);
    pc_status st = counts ? PC_OK : pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    if ((st = pc_comm_agree(c, st))) {
        pc_free(counts);
        return st;
    }
    st = c->allgather(c->user, &l->n, counts, sizeof l->n);
    for (int32_t q = 0; q < c->size && !st; q++)
        for (int64_t i = 0; i < counts[q] && !st; i++) {
            bad_image one;
            const bad_image *b = &one;
            if (q == c->rank && q == 0) b = &l->v[i];
            else if (q == c->rank) st = c->send(c->user, &l->v[i], sizeof one, 0);
            else if (c->rank == 0) st = c->recv(c->user, &one, sizeof one, q);
            if (st || c->rank != 0) continue;
            const char *name = b->index >= 0 ? paths[b->index] : "(an image)";
            char msg[sizeof one.message];
            snprintf(msg, sizeof msg, "%.*s", (int)sizeof msg - 1, b->message);
            if (opt->on_image_error) opt->on_image_error(opt->on_image_error_user, name, (pc_status)b->status, msg);
        }
    pc_free(counts);
    return st;
}

/* Process 0's list of inputs on every process (each lists its inputs itself; a host whose listing
 * differs, or that lacks some files, must still take the same share of the same list). *buf holds
 * the strings, *list points into it. */
static pc_status share_list(const pc_comm *c, const char *const *paths, size_t n_paths, char **buf,
                            const char ***list, size_t *n_out) {
    uint64_t size[2] = {n_paths, 0}; /* count, bytes */
    for (size_t i = 0; c->rank == 0 && i < n_paths; i++) size[1] += strlen(paths[i]) + 1;
    pc_status st = c->bcast(c->user, size, sizeof size, 0);
    if (st) return st;
    if (size[0] > (uint64_t)INT32_MAX || size[1] > ((uint64_t)1 << 40))
        return pc_fail(PC_ERR_TOO_LARGE, "fit: %llu images, %llu bytes of names: too many", (unsigned long long)size[0],
                       (unsigned long long)size[1]);
    *buf = pc_malloc((size_t)size[1]);
    *list = pc_malloc(sizeof(char *) * (size_t)size[0]);
    st = *buf && *list ? PC_OK : pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for the list of %llu images",
                                         (unsigned long long)size[0]);
    if ((st = pc_comm_agree(c, st))) return st;
    size_t o = 0;
    for (size_t i = 0; c->rank == 0 && i < n_paths; i++) {
        const size_t len = strlen(paths[i]) + 1;
        memcpy(*buf + o, paths[i], len);
        o += len;
    }
    if ((st = c->bcast(c->user, *buf, (size_t)size[1], 0))) return st;
    o = 0;
    for (size_t i = 0; i < (size_t)size[0]; i++) {
        (*list)[i] = *buf + o;
        o += strnlen(*buf + o, (size_t)size[1] - o) + 1;
    }
    *n_out = (size_t)size[0];
    return PC_OK;
}

/* Process 0 gets the bank rows (selection order), their global row indices and the usable images'
 * input indices; every other process sends its own. sel: the global candidate indices, on every
 * process. rows: this process's candidate -> its full row (NULL: the same). */
static pc_status gather_bank(const pc_comm *c, pc_model *m, pc_fit_feats *ff, const int64_t *sel, int64_t n_sel,
                             const int64_t *offsets, const int64_t *uoff, const int64_t *rows, size_t lo,
                             pc_fit_shard_stats *stats) {
    const size_t D = (size_t)m->dim, hw = ff->hw;
    const int64_t CH = 1024; /* rows per message */
    const int32_t me = c->rank;
    pc_status st = PC_OK;
    int64_t *pos = pc_malloc(sizeof(int64_t) * (size_t)(n_sel > 0 ? n_sel : 1));   /* positions in the bank */
    int64_t *local = pc_malloc(sizeof(int64_t) * (size_t)(n_sel > 0 ? n_sel : 1)); /* usable-row indices */
    int64_t *full = pc_malloc(sizeof(int64_t) * (size_t)(n_sel > 0 ? n_sel : 1));  /* global full rows */
    int64_t *usable = pc_malloc(sizeof(int64_t) * (ff->used > 0 ? ff->used : 1));
    float *buf = pc_malloc(sizeof(float) * (size_t)CH * D);
    if (!pos || !local || !full || !usable || !buf) st = pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for the gather");
    if (!st && me == 0) {
        m->bank_owned = pc_malloc(sizeof(float) * (size_t)(n_sel > 0 ? n_sel : 1) * D);
        m->coreset_idx = pc_malloc(sizeof(int64_t) * (size_t)(n_sel > 0 ? n_sel : 1));
        m->usable_src = pc_malloc(sizeof(int64_t) * (size_t)(uoff[c->size] > 0 ? uoff[c->size] : 1));
        if (!m->bank_owned || !m->coreset_idx || !m->usable_src)
            st = pc_fail(PC_ERR_NO_MEMORY, "fit: cannot allocate the memory bank (%lld x %zu)", (long long)n_sel, D);
    }
    if ((st = pc_comm_agree(c, st))) goto done;
    for (size_t u = 0; u < ff->used; u++) usable[u] = (int64_t)lo + (ff->img_of ? ff->img_of[u] : (int64_t)u);

    /* st: this process's own failure, which does not stop the messages (the others would wait for
     * them); ts: a failure of the transport, which does */
    pc_status ts = PC_OK;
    for (int32_t q = 0; q < c->size && !ts; q++) {
        if (me != 0 && me != q) continue;
        /* q's picks, in selection order */
        int64_t n = 0;
        for (int64_t k = 0; k < n_sel; k++) {
            const int64_t g = sel[k];
            if (g < offsets[q] || g >= offsets[q + 1]) continue;
            const int64_t l = g - offsets[q];
            pos[n] = k;
            if (me == q) local[n] = rows ? rows[l] : l, full[n] = uoff[q] * (int64_t)hw + local[n];
            n++;
        }
        const int64_t n_used = uoff[q + 1] - uoff[q];
        if (me == 0 && q == 0) {
            memcpy(m->usable_src, usable, sizeof(int64_t) * (size_t)n_used);
            for (int64_t i = 0; i < n; i++) m->coreset_idx[pos[i]] = full[i];
        } else if (me == q) {
            if (n_used) ts = c->send(c->user, usable, sizeof(int64_t) * (size_t)n_used, 0);
            if (!ts && n) ts = c->send(c->user, full, sizeof(int64_t) * (size_t)n, 0);
            stats->bytes_sent += (n_used + n) * 8;
        } else { /* me == 0: q's */
            if (n_used) ts = c->recv(c->user, m->usable_src + uoff[q], sizeof(int64_t) * (size_t)n_used, q);
            if (!ts && n) ts = c->recv(c->user, full, sizeof(int64_t) * (size_t)n, q);
            for (int64_t i = 0; i < n && !ts; i++) m->coreset_idx[pos[i]] = full[i];
            stats->bytes_received += (n_used + n) * 8;
        }
        for (int64_t i0 = 0; i0 < n && !ts; i0 += CH) {
            const int64_t nc = PC_MIN(CH, n - i0);
            const size_t bytes = sizeof(float) * (size_t)nc * D;
            if (me == q && !st) st = pc_fit_feats_gather(ff, local + i0, nc, buf);
            if (me == q && q != 0) ts = c->send(c->user, buf, bytes, 0), stats->bytes_sent += (int64_t)bytes;
            if (me == 0 && q != 0) ts = c->recv(c->user, buf, bytes, q), stats->bytes_received += (int64_t)bytes;
            for (int64_t i = 0; me == 0 && !ts && i < nc; i++)
                memcpy(m->bank_owned + (size_t)pos[i0 + i] * D, buf + (size_t)i * D, D * sizeof(float));
        }
    }
    if (ts) {
        st = ts;
        goto done;
    }
    st = pc_comm_agree(c, st);
done:
    pc_free(pos), pc_free(local), pc_free(full), pc_free(usable), pc_free(buf);
    return st;
}

pc_status pc_model_fit_shard(const pc_fit_options *opt, const char *const *paths, size_t n_paths, const pc_comm *comm,
                             pc_model **out, pc_fit_shard_stats *stats) {
    pc_threads_apply();
    pc_clear_error();
    pc_fit_shard_stats dummy;
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    pc_status st = PC_OK;
    if (!out || !opt || !comm || (!paths && n_paths && comm->rank == 0))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: out, options, communicator or paths is NULL");
    *out = NULL;
    char *names = NULL;
    const char **list = NULL;
    if ((st = share_list(comm, paths, comm->rank == 0 ? n_paths : 0, &names, &list, &n_paths))) {
        pc_free(names), pc_free(list);
        return st;
    }
    paths = list;
    const int32_t R = comm->size, me = comm->rank;
    pc_model *m = NULL;
    pc_fit_feats ff = {.spill = {.fd = -1}};
    bad_list bad = {.paths = paths};
    int64_t *rows = NULL, *offsets = NULL, *uoff = NULL, *counts = NULL, *sel = NULL, *starts = NULL;
    size_t lo = 0, hi = 0;

    if (n_paths == 0) st = pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: no training images given");
    else if (n_paths > (size_t)INT32_MAX) st = pc_fail(PC_ERR_TOO_LARGE, "fit: too many images");
    else if (opt->tiling.tile > 0)
        st = pc_fail(PC_ERR_UNSUPPORTED, "fit: tiling is not available in a fit spread over processes yet");
    if (!st) st = pc_model_fit_setup(opt, &m);
    if (!st) {
        offsets = pc_calloc((size_t)R + 1, sizeof *offsets);
        uoff = pc_calloc((size_t)R + 1, sizeof *uoff);
        counts = pc_calloc((size_t)R * 2, sizeof *counts);
        if (!offsets || !uoff || !counts) st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    if ((st = pc_comm_agree(comm, st))) goto done;

    /* this process's features */
    double t0 = pc_monotonic_seconds();
    pc_fit_shard_range(n_paths, opt->batch_size, me, R, &lo, &hi);
    stats->images = (int64_t)(hi - lo);
    bad.lo = lo, bad.hi = hi;
    ff.hw = (size_t)m->grid_h * m->grid_w, ff.D = (size_t)m->dim, ff.P = (size_t)opt->projection_dim;
    if (hi > lo) {
        pc_fit_options o = *opt;
        o.on_image_error = record_bad;
        o.on_image_error_user = &bad;
        pc_fit_source src = {.paths = paths + lo};
        const pc_fit_share share = {n_paths, me == 0};
        st = pc_model_extract_part(m, &o, &src, hi - lo, &share, &ff);
        if (!st && bad.failed) st = pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for the list of unusable images");
    }
    /* candidates: every row, or those inside the region of interest (moved to the front of pj) */
    int64_t n_loc = (int64_t)(ff.used * ff.hw);
    if (!st && m->roi.data && ff.used) {
        st = pc_roi_fit_rows(&rows, &n_loc, &m->roi, ff.sizes, ff.img_of, ff.used, m->resize, m->crop, m->grid_h,
                             m->grid_w);
        for (int64_t i = 0; !st && ff.pj && i < n_loc; i++)
            memmove(ff.pj + (size_t)i * ff.P, ff.pj + (size_t)rows[i] * ff.P, ff.P * sizeof(float));
    }
    /* An image this process cannot read at all (an I/O error: missing or unreadable, as on a host
     * without the shared filesystem) or could not decode for want of memory ends the job, naming the
     * process; an image that is read but cannot be decoded is skipped and reported, as one process
     * does (docs/mpi.md). */
    for (int64_t i = 0; !st && i < bad.n; i++) {
        const bad_image *b = &bad.v[i];
        if (b->status == PC_ERR_IO)
            st = pc_fail(PC_ERR_IO, "fit: cannot read a training image: %.*s (every process must see the images at "
                         "the same paths)", (int)sizeof b->message, b->message);
        else if (b->status == PC_ERR_NO_MEMORY)
            st = pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for a training image: %.*s", (int)sizeof b->message,
                         b->message);
    }
    stats->features_seconds = pc_monotonic_seconds() - t0;
    stats->rows = n_loc;
    if ((st = pc_comm_agree(comm, st))) goto done;
    if ((st = report_bad(comm, opt, &bad, paths))) goto done;

    /* every process's share: candidates and usable images, as prefix sums */
    {
        int64_t mine[2] = {n_loc, (int64_t)ff.used};
        if ((st = comm->allgather(comm->user, mine, counts, sizeof mine))) goto done;
        for (int32_t q = 0; q < R; q++) {
            offsets[q + 1] = offsets[q] + counts[2 * q];
            uoff[q + 1] = uoff[q] + counts[2 * q + 1];
        }
    }
    const int64_t N = offsets[R];
    if (uoff[R] == 0) st = pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: none of the %zu training images could be used", n_paths);
    else if (N == 0) st = pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: no patch of the training images is inside the region of interest");
    if (st) goto done; /* the same on every process */

    /* the sampler, on every process */
    t0 = pc_monotonic_seconds();
    const int64_t n_sel = pc_fit_bank_size(m, opt, N);
    sel = pc_malloc(sizeof(int64_t) * (size_t)(n_sel > 0 ? n_sel : 1));
    st = sel ? PC_OK : pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    int32_t ns = 0;
    if (!st && m->sampler == PC_SAMPLER_APPROX_GREEDY) st = pc_fit_starts(opt, m->seed, N, &starts, &ns);
    if ((st = pc_comm_agree(comm, st))) goto done;
    if (m->sampler == PC_SAMPLER_APPROX_GREEDY) {
        float radius = NAN;
        st = pc_coreset_greedy_shard(sel, &radius, ff.pj, n_loc, (int32_t)ff.P, comm, offsets, starts, ns, n_sel,
                                     opt->progress, opt->progress_user, &stats->coreset_comm_seconds);
        stats->picks = n_sel;
        m->coverage_radius = opt->coreset_projection ? NAN : radius;
        pc_free(ff.pj), ff.pj = NULL;
    } else {
        st = pc_coreset_select(sel, m->sampler, NULL, N, m->dim, n_sel, m->seed, opt->progress, opt->progress_user);
    }
    stats->coreset_seconds = pc_monotonic_seconds() - t0;
    if ((st = pc_comm_agree(comm, st))) goto done;

    /* the bank, on process 0 */
    t0 = pc_monotonic_seconds();
    st = gather_bank(comm, m, &ff, sel, n_sel, offsets, uoff, rows, lo, stats);
    if (!st && me == 0) {
        m->n_train_images = (int32_t)uoff[R];
        m->n_patches_total = N;
        m->bank_n = n_sel;
        st = pc_model_finish_bank(m);
    }
    stats->gather_seconds = pc_monotonic_seconds() - t0;
    st = pc_comm_agree(comm, st);

done:
    pc_fit_feats_free(&ff);
    pc_free(bad.v);
    pc_free(rows), pc_free(offsets), pc_free(uoff), pc_free(counts), pc_free(sel), pc_free(starts);
    pc_free(names), pc_free(list);
    if (st || me != 0) {
        pc_model_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}
