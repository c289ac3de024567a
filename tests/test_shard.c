/*
 * test_shard.c - the fit spread over processes (docs/mpi.md, src/fit_shard.c) without MPI: the
 * communicator interface (src/comm.h) implemented with POSIX threads in this process, one thread per
 * "process", each with its own rank.
 *
 * Oracle: the single-process functions of this library (pc_coreset_greedy_projected_radius, pc_model_fit),
 * whose own correctness is tested elsewhere against PyTorch and float64 (test_coreset.c, test_pipeline.c,
 * ...). The sharded code claims to be those functions bit for bit: every process computes its points'
 * distances (and its images' features) with the single-process code, and only the reductions are split
 * (the comment at the top of src/fit_shard.c). So every comparison here is exact equality:
 *   - greedy_shard_equals_single: random projected points split over 1, 2, 3, 4, 5 and 7 processes in
 *     contiguous shards (even, uneven, with empty shards); every process's picks equal the single-process
 *     picks index for index and the coverage radius equals bit for bit;
 *   - greedy_shard_ties_lowest_index: duplicated rows across shards make exact ties; the picks equal the
 *     single-process ones, and of each duplicate pair the lower global index is picked and the higher
 *     never (the tie rule: largest distance, lowest index);
 *   - agree_names_lowest_failing_rank: pc_comm_agree gives every process the lowest failing rank's
 *     status and message, prefixed "rank R of N: ", and PC_OK when all pass;
 *   - fit_shard_equals_fit (needs ../shared; skips when absent): ResNet-18 on bottle images, 3 and 4
 *     processes (4 > the 3 batches: a process gets none), greedy and random samplers, and a list with an
 *     unusable file in the middle: process 0 alone gets the model, whose bank, coreset indices, image
 *     sources and counts equal pc_model_fit's and whose saved file is byte for byte pc_model_fit's; the
 *     unusable file is reported once, on process 0 only.
 */
#include "comm.h"
#include "coreset.h"
#include "fit_shard.h"
#include "internal.h"
#include "model_internal.h"
#include "patchcore.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PROCS 8

/* ---- a communicator over threads ----------------------------------------------------------------
 * Collectives: each thread puts what it offers (pointers into its own buffers) into slot[rank], waits at
 * the barrier, computes the result from every slot in rank order into its own locals, waits again (so no
 * thread changes a buffer another is still reading), then writes its outputs. Every thread checks that
 * all took part in the same collective with the same sizes (a library that called them in different
 * orders would hang or mix messages under MPI); all see the same slots, so all agree on the verdict.
 * send/recv: a FIFO mailbox per (from, to) pair; the sender copies the bytes. */

enum { K_BCAST = 1, K_ALLGATHER, K_ARGMAX, K_MAX };

typedef struct slot {
    int kind;
    size_t bytes;      /* bcast, allgather */
    int32_t root, dim; /* bcast; argmax */
    const void *buf;   /* bcast, allgather: the bytes; max: the float */
    const float *v;    /* argmax */
    const int64_t *g;
    const float *row;
} slot;

typedef struct msg {
    struct msg *next;
    size_t bytes;
    unsigned char data[];
} msg;

typedef struct mailbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msg *head, *tail;
} mailbox;

typedef struct group {
    int32_t size;
    pthread_barrier_t bar;
    slot slots[MAX_PROCS];
    mailbox box[MAX_PROCS * MAX_PROCS]; /* [from * size + to] */
    atomic_int protocol_errors;         /* mismatched collectives or message sizes: fails the test */
} group;

typedef struct proc {
    group *g;
    pc_comm comm;
    void (*body)(const pc_comm *c, void *arg);
    void *arg;
} proc;

static pc_status protocol_error(group *g, const char *what) {
    atomic_fetch_add(&g->protocol_errors, 1);
    return pc_fail(PC_ERR_INTERNAL, "thread communicator: %s", what);
}

/* offer s, wait for everyone; 0 when every process offers the same collective (kind, sizes, root) */
static int gather_slots(proc *p, const slot *s) {
    group *g = p->g;
    g->slots[p->comm.rank] = *s;
    pthread_barrier_wait(&g->bar);
    int bad = 0;
    for (int32_t q = 0; q < g->size; q++) {
        const slot *o = &g->slots[q];
        bad |= o->kind != s->kind || o->bytes != s->bytes || o->root != s->root || o->dim != s->dim;
    }
    return bad;
}

static pc_status t_bcast(void *user, void *buf, size_t bytes, int32_t root) {
    proc *p = user;
    const int bad = gather_slots(p, &(slot){.kind = K_BCAST, .bytes = bytes, .root = root, .buf = buf});
    /* only the root's buffer is read, and the root does not write it */
    if (!bad && p->comm.rank != root) memcpy(buf, p->g->slots[root].buf, bytes);
    pthread_barrier_wait(&p->g->bar);
    return bad ? protocol_error(p->g, "bcast mismatch") : PC_OK;
}

static pc_status t_allgather(void *user, const void *mine, void *all, size_t bytes) {
    proc *p = user;
    const int bad = gather_slots(p, &(slot){.kind = K_ALLGATHER, .bytes = bytes, .buf = mine});
    for (int32_t q = 0; !bad && q < p->g->size; q++)
        memcpy((char *)all + (size_t)q * bytes, p->g->slots[q].buf, bytes);
    pthread_barrier_wait(&p->g->bar);
    return bad ? protocol_error(p->g, "allgather mismatch") : PC_OK;
}

/* comm.h's rule: the largest distance, the lowest global index among equal ones; g = -1 never wins */
static pc_status t_argmax(void *user, float *v, int64_t *g, float *row, int32_t proj_dim) {
    proc *p = user;
    const int bad = gather_slots(p, &(slot){.kind = K_ARGMAX, .dim = proj_dim, .v = v, .g = g, .row = row});
    int32_t w = -1;
    for (int32_t q = 0; !bad && q < p->g->size; q++) {
        const slot *o = &p->g->slots[q];
        if (*o->g < 0) continue;
        const slot *b = w >= 0 ? &p->g->slots[w] : NULL;
        if (!b || *o->v > *b->v || (*o->v == *b->v && *o->g < *b->g)) w = q;
    }
    float wv = -INFINITY;
    int64_t wg = -1;
    float *wrow = malloc(sizeof(float) * (size_t)proj_dim);
    if (w >= 0) {
        wv = *p->g->slots[w].v, wg = *p->g->slots[w].g;
        memcpy(wrow, p->g->slots[w].row, sizeof(float) * (size_t)proj_dim);
    }
    pthread_barrier_wait(&p->g->bar);
    if (!bad) {
        *v = wv, *g = wg;
        if (w >= 0) memcpy(row, wrow, sizeof(float) * (size_t)proj_dim);
    }
    free(wrow);
    return bad ? protocol_error(p->g, "argmax mismatch") : PC_OK;
}

static pc_status t_max(void *user, float *v) {
    proc *p = user;
    const int bad = gather_slots(p, &(slot){.kind = K_MAX, .buf = v});
    float m = bad ? 0.f : *(const float *)p->g->slots[0].buf;
    for (int32_t q = 1; !bad && q < p->g->size; q++) {
        const float x = *(const float *)p->g->slots[q].buf;
        if (x > m) m = x;
    }
    pthread_barrier_wait(&p->g->bar);
    if (!bad) *v = m;
    return bad ? protocol_error(p->g, "max mismatch") : PC_OK;
}

static pc_status t_send(void *user, const void *buf, size_t bytes, int32_t to) {
    proc *p = user;
    if (to < 0 || to >= p->g->size || to == p->comm.rank) return protocol_error(p->g, "send to a bad rank");
    msg *m = malloc(sizeof *m + (bytes ? bytes : 1));
    m->next = NULL, m->bytes = bytes;
    if (bytes) memcpy(m->data, buf, bytes);
    mailbox *b = &p->g->box[p->comm.rank * p->g->size + to];
    pthread_mutex_lock(&b->mu);
    if (b->tail) b->tail->next = m;
    else b->head = m;
    b->tail = m;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return PC_OK;
}

static pc_status t_recv(void *user, void *buf, size_t bytes, int32_t from) {
    proc *p = user;
    if (from < 0 || from >= p->g->size || from == p->comm.rank) return protocol_error(p->g, "recv from a bad rank");
    mailbox *b = &p->g->box[from * p->g->size + p->comm.rank];
    pthread_mutex_lock(&b->mu);
    while (!b->head) pthread_cond_wait(&b->cv, &b->mu);
    msg *m = b->head;
    b->head = m->next;
    if (!b->head) b->tail = NULL;
    pthread_mutex_unlock(&b->mu);
    const size_t got = m->bytes;
    if (got == bytes) memcpy(buf, m->data, bytes);
    free(m);
    return got == bytes ? PC_OK : protocol_error(p->g, "message size differs from the receive's");
}

static void *proc_main(void *arg) {
    proc *p = arg;
    p->body(&p->comm, p->arg);
    return NULL;
}

/* Run body(comm, arg) on `size` threads, ranks 0..size-1, and wait for all. Returns the protocol errors
 * (collectives that did not match, messages of the wrong size, messages left unread). */
static int run_procs(int32_t size, void (*body)(const pc_comm *c, void *arg), void *arg) {
    assert_true(size >= 1 && size <= MAX_PROCS);
    group *g = calloc(1, sizeof *g);
    g->size = size;
    pthread_barrier_init(&g->bar, NULL, (unsigned)size);
    for (int32_t i = 0; i < size * size; i++) {
        pthread_mutex_init(&g->box[i].mu, NULL);
        pthread_cond_init(&g->box[i].cv, NULL);
    }
    proc procs[MAX_PROCS];
    pthread_t th[MAX_PROCS];
    for (int32_t r = 0; r < size; r++) {
        procs[r] = (proc){.g = g, .body = body, .arg = arg};
        procs[r].comm = (pc_comm){.rank = r, .size = size, .user = &procs[r], .bcast = t_bcast,
                                  .allgather = t_allgather, .argmax = t_argmax, .max = t_max, .send = t_send,
                                  .recv = t_recv};
        assert_int_equal(pthread_create(&th[r], NULL, proc_main, &procs[r]), 0);
    }
    for (int32_t r = 0; r < size; r++) pthread_join(th[r], NULL);
    int errors = atomic_load(&g->protocol_errors);
    for (int32_t i = 0; i < size * size; i++) {
        for (msg *m = g->box[i].head, *nx; m; m = nx) nx = m->next, free(m), errors++; /* sent, never received */
        pthread_mutex_destroy(&g->box[i].mu);
        pthread_cond_destroy(&g->box[i].cv);
    }
    pthread_barrier_destroy(&g->bar);
    free(g);
    return errors;
}

/* ---- the sharded greedy loop --------------------------------------------------------------------- */

static float *lcg_points(int64_t n, int32_t p, uint64_t seed, float spread) {
    float *x = malloc(sizeof(float) * (size_t)n * p);
    uint64_t s = seed;
    for (int64_t i = 0; i < n * p; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull; /* Knuth's MMIX LCG, top 24 bits */
        x[i] = ((float)(s >> 40) * (1.0f / 16777216.0f) - 0.5f) * spread;
    }
    return x;
}

typedef struct greedy_job {
    const float *pj;
    const int64_t *offsets, *starts;
    int32_t n_starts, P;
    int64_t n;
    int64_t *out[MAX_PROCS];
    float radius[MAX_PROCS];
    pc_status st[MAX_PROCS];
} greedy_job;

static void greedy_body(const pc_comm *c, void *arg) {
    greedy_job *j = arg;
    const int32_t r = c->rank;
    /* one OpenMP thread per "process" (no oversubscription of the 2 cores); the loop's result does not
     * depend on the thread count (chunks of multiples of 8, first index on ties), and the reference
     * runs with the process-wide count */
    pc_set_num_threads_local(1);
    pc_threads_apply();
    const int64_t lo = j->offsets[r], n_local = j->offsets[r + 1] - lo;
    j->st[r] = pc_coreset_greedy_shard(j->out[r], &j->radius[r], j->pj + (size_t)lo * j->P, n_local, j->P, c,
                                       j->offsets, j->starts, j->n_starts, j->n, NULL, NULL, NULL);
}

/* Run the sharded loop with these offsets and require every process's picks and radius to be the
 * reference's exactly. */
static void check_shards(const char *what, const float *pj, int32_t P, const int64_t *offsets, int32_t R,
                         const int64_t *starts, int32_t ns, int64_t n, const int64_t *ref_idx, float ref_radius) {
    greedy_job j = {.pj = pj, .offsets = offsets, .starts = starts, .n_starts = ns, .P = P, .n = n};
    for (int32_t r = 0; r < R; r++) {
        j.out[r] = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
        for (int64_t i = 0; i < n; i++) j.out[r][i] = -7;
        j.radius[r] = -1.f;
    }
    assert_int_equal(run_procs(R, greedy_body, &j), 0);
    for (int32_t r = 0; r < R; r++) {
        if (j.st[r] != PC_OK) print_message("%s: rank %d: %s\n", what, r, pc_last_error());
        assert_int_equal(j.st[r], PC_OK);
        int64_t first = -1;
        for (int64_t i = 0; i < n && first < 0; i++)
            if (j.out[r][i] != ref_idx[i]) first = i;
        if (first >= 0)
            print_message("%s: rank %d of %d: pick %lld is %lld, single-process %lld\n", what, r, R, (long long)first,
                          (long long)j.out[r][first], (long long)ref_idx[first]);
        assert_int_equal(first, -1);
        /* bit for bit: the same float computed by the same code, reduced by an exact maximum */
        assert_memory_equal(&j.radius[r], &ref_radius, sizeof(float));
        free(j.out[r]);
    }
}

static void test_greedy_shard_equals_single(void **state) {
    (void)state;
    const int64_t N = 3000, n = 300;
    const int32_t P = PC_CORESET_PROJ_DIM;
    float *pj = lcg_points(N, P, 12345, 2.0f);
    int64_t starts[PC_CORESET_STARTS];
    const int32_t ns = pc_coreset_starts(starts, 7, N);
    int64_t *ref = malloc(sizeof(int64_t) * (size_t)n);
    float ref_radius = -1.f;
    assert_int_equal(pc_coreset_greedy_projected_radius(ref, pj, N, P, starts, ns, n, NULL, NULL, &ref_radius), PC_OK);

    /* contiguous shards, offsets[R] = N: even splits, uneven ones with boundaries that are not multiples
     * of 8 (a point then falls in another position of the 8-lane blocks than on one process), and empty
     * shards (first, middle, last) */
    static const struct {
        int32_t R;
        int64_t off[MAX_PROCS + 1];
    } splits[] = {
        {1, {0, 3000}},
        {2, {0, 1500, 3000}},
        {2, {0, 1237, 3000}},
        {2, {0, 0, 3000}},
        {2, {0, 3000, 3000}},
        {3, {0, 1000, 2000, 3000}},
        {3, {0, 5, 2990, 3000}},
        {4, {0, 0, 1000, 1000, 3000}},
        {5, {0, 600, 1200, 1800, 2400, 3000}},
        {5, {0, 3, 700, 701, 2222, 3000}},
        {5, {0, 0, 0, 3000, 3000, 3000}},
        {7, {0, 428, 857, 1285, 1714, 2142, 2571, 3000}},
        {7, {0, 1, 2, 3, 4, 5, 6, 3000}},
        {7, {0, 0, 1000, 1000, 1000, 2999, 3000, 3000}},
    };
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
        char what[128];
        int len = snprintf(what, sizeof what, "split %zu (", s);
        for (int32_t q = 0; q <= splits[s].R; q++)
            len += snprintf(what + len, sizeof what - (size_t)len, "%s%lld", q ? "," : "", (long long)splits[s].off[q]);
        snprintf(what + len, sizeof what - (size_t)len, ")");
        check_shards(what, pj, P, splits[s].off, splits[s].R, starts, ns, n, ref, ref_radius);
    }
    print_message("%zu splits over 1-7 processes: 300 picks and the radius (%.6g) as on one process\n",
                  sizeof splits / sizeof splits[0], (double)ref_radius);
    free(pj), free(ref);
}

/* Exact ties across shards: K "outlier" rows (10x the spread, so the loop picks them first) each appear
 * twice, at lo[k] in the first half and hi[k] in the second. Duplicates have bit-identical distances to
 * everything (the same bytes through the same code: the 8-lane block and tail kernels agree lane for
 * lane, and pruning decides from the pair's identical state), so whenever one of a pair is the farthest
 * the other is tied with it: the tie rule must pick lo[k], after which hi[k]'s distance is exactly 0 and
 * it is never picked (n is below the number of distinct rows). P = 20 is not a multiple of 8: the scalar
 * distance path. */
static void test_greedy_shard_ties_lowest_index(void **state) {
    (void)state;
    enum { N = 1200, K = 40, P = 20 };
    const int64_t n = 100;
    float *pj = lcg_points(N, P, 777, 1.0f), *out = lcg_points(K, P, 778, 10.0f);
    int64_t lo[K], hi[K];
    for (int k = 0; k < K; k++) {
        lo[k] = 13 + 14 * k;            /* 13 .. 559 */
        hi[k] = N - 1 - 7 * k;          /* 1199 .. 926 */
        memcpy(pj + (size_t)lo[k] * P, out + (size_t)k * P, sizeof(float) * P);
        memcpy(pj + (size_t)hi[k] * P, out + (size_t)k * P, sizeof(float) * P);
    }
    int64_t starts[PC_CORESET_STARTS];
    const int32_t ns = pc_coreset_starts(starts, 3, N);
    int64_t ref[100];
    float ref_radius = -1.f;
    assert_int_equal(pc_coreset_greedy_projected_radius(ref, pj, N, P, starts, ns, n, NULL, NULL, &ref_radius), PC_OK);

    /* the construction made ties that the loop met: of each pair lo is picked, hi never; and every
     * pair was picked (each such pick was made while its twin had exactly the same distance) */
    int tied_picks = 0;
    for (int k = 0; k < K; k++) {
        int lo_picked = 0, hi_picked = 0;
        for (int64_t i = 0; i < n; i++) lo_picked += ref[i] == lo[k], hi_picked += ref[i] == hi[k];
        assert_int_equal(hi_picked, 0);
        tied_picks += lo_picked;
    }
    print_message("single process: %d of 100 picks made on an exact tie with a duplicate\n", tied_picks);
    assert_int_equal(tied_picks, K);

    /* shards that separate every pair (2 processes), some pairs (3, 4), with the boundary between twins
     * of one pair unaligned, and with an empty process */
    static const struct {
        int32_t R;
        int64_t off[MAX_PROCS + 1];
    } splits[] = {
        {2, {0, 600, 1200}},
        {3, {0, 300, 950, 1200}},
        {4, {0, 561, 561, 1100, 1200}},
        {5, {0, 13, 14, 927, 1199, 1200}},
    };
    for (size_t s = 0; s < sizeof splits / sizeof splits[0]; s++) {
        char what[64];
        snprintf(what, sizeof what, "ties, split %zu", s);
        check_shards(what, pj, P, splits[s].off, splits[s].R, starts, ns, n, ref, ref_radius);
    }
    free(pj), free(out);
}

/* ---- agreeing on a status ------------------------------------------------------------------------ */

typedef struct agree_job {
    pc_status mine[MAX_PROCS], got[MAX_PROCS];
    char msg[MAX_PROCS][PC_ERRMSG_MAX];
} agree_job;

static void agree_body(const pc_comm *c, void *arg) {
    agree_job *j = arg;
    const int32_t r = c->rank;
    pc_clear_error();
    /* a failing process has its own message in its thread's error, as after any failing library call */
    pc_status mine = j->mine[r] ? pc_fail(j->mine[r], "boom on rank %d", (int)r) : PC_OK;
    j->got[r] = pc_comm_agree(c, mine);
    snprintf(j->msg[r], sizeof j->msg[r], "%s", pc_last_error());
}

static void test_agree_names_lowest_failing_rank(void **state) {
    (void)state;
    enum { R = 4 };
    /* which ranks fail with what; the lowest failing rank's status and message must win everywhere */
    static const pc_status cases[][R] = {
        {PC_OK, PC_ERR_NO_MEMORY, PC_OK, PC_ERR_NO_MEMORY},
        {PC_OK, PC_ERR_NO_MEMORY, PC_OK, PC_ERR_IO},        /* a different status on the higher rank */
        {PC_ERR_IO, PC_OK, PC_ERR_NO_MEMORY, PC_OK},        /* rank 0 (the largest key) */
        {PC_OK, PC_OK, PC_OK, PC_ERR_INVALID_ARGUMENT},     /* the highest rank only (the smallest key) */
        {PC_OK, PC_OK, PC_OK, PC_OK},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        agree_job j;
        memset(&j, 0, sizeof j);
        memcpy(j.mine, cases[k], sizeof cases[k]);
        int q = -1;
        for (int r = R - 1; r >= 0; r--)
            if (cases[k][r]) q = r;
        assert_int_equal(run_procs(R, agree_body, &j), 0);
        char prefix[64], own[64];
        snprintf(prefix, sizeof prefix, "rank %d of %d: ", q, R);
        snprintf(own, sizeof own, "boom on rank %d", q);
        for (int r = 0; r < R; r++) {
            if (q < 0) {
                assert_int_equal(j.got[r], PC_OK);
                continue;
            }
            const int prefixed = strncmp(j.msg[r], prefix, strlen(prefix)) == 0;
            if (j.got[r] != cases[k][q] || !prefixed || !strstr(j.msg[r], own))
                print_message("case %zu, rank %d: status %d, message \"%s\"\n", k, r, (int)j.got[r], j.msg[r]);
            assert_int_equal(j.got[r], cases[k][q]);
            assert_true(prefixed); /* the message starts "rank R of N: " */
            assert_non_null(strstr(j.msg[r], own));
        }
    }
}

/* ---- the sharded fit on real images -------------------------------------------------------------- */

typedef struct fit_job fit_job;
typedef struct bad_ctx {
    fit_job *j;
    int rank; /* MAX_PROCS: pc_model_fit's (the reference) */
} bad_ctx;

struct fit_job {
    const pc_fit_options *opt;
    const char *const *paths;
    size_t n_paths;
    pc_status st[MAX_PROCS];
    pc_model *m[MAX_PROCS];
    pc_fit_shard_stats stats[MAX_PROCS];
    char err[MAX_PROCS][PC_ERRMSG_MAX];
    pthread_mutex_t mu; /* guards the counts below: the callback runs on the processes' threads */
    int bad_calls[MAX_PROCS + 1];
    char bad_path[MAX_PROCS + 1][4096];
    bad_ctx ctx[MAX_PROCS + 1];
};

static void on_bad(void *user, const char *path, pc_status status, const char *message) {
    bad_ctx *c = user;
    pthread_mutex_lock(&c->j->mu);
    c->j->bad_calls[c->rank]++;
    snprintf(c->j->bad_path[c->rank], sizeof c->j->bad_path[c->rank], "%s", path ? path : "(null)");
    pthread_mutex_unlock(&c->j->mu);
}

static void fit_body(const pc_comm *c, void *arg) {
    fit_job *j = arg;
    const int32_t r = c->rank;
    /* each "process" on one thread: the 2 cores are not oversubscribed, and an image's features do not
     * depend on the thread count (fit_shard.c) */
    pc_set_num_threads_local(1);
    pc_fit_options o = *j->opt;
    o.on_image_error = on_bad;
    o.on_image_error_user = &j->ctx[r];
    j->st[r] = pc_model_fit_shard(&o, j->paths, j->n_paths, c, &j->m[r], &j->stats[r]);
    snprintf(j->err[r], sizeof j->err[r], "%s", j->st[r] ? pc_last_error() : "");
}

static void job_init(fit_job *j, const pc_fit_options *opt, const char *const *paths, size_t n) {
    memset(j, 0, sizeof *j);
    j->opt = opt, j->paths = paths, j->n_paths = n;
    pthread_mutex_init(&j->mu, NULL);
    for (int r = 0; r <= MAX_PROCS; r++) j->ctx[r] = (bad_ctx){j, r};
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    assert_int_equal(*n, (size_t)len);
    return b;
}

/* m must be ref exactly: counts, bank rows, the coreset's indices, the images the rows came from, the
 * coverage radius, and the saved file byte for byte (everything the model file holds). */
static void check_same_model(const pc_model *ref, const pc_model *m, const char *dir, const char *what) {
    pc_model_info a, b;
    assert_int_equal(pc_model_get_info(ref, &a), PC_OK);
    assert_int_equal(pc_model_get_info(m, &b), PC_OK);
    print_message("%s: %d images, %lld patches, bank %lld\n", what, b.n_train_images, (long long)b.n_patches_total,
                  (long long)b.bank_size);
    assert_int_equal(b.n_train_images, a.n_train_images);
    assert_int_equal(b.n_patches_total, a.n_patches_total);
    assert_int_equal(b.bank_size, a.bank_size);
    assert_memory_equal(&b.coverage_radius, &a.coverage_radius, sizeof(double)); /* NaN for random: same bits */
    int64_t na, nb;
    int32_t da, db;
    const float *ba = pc_model_bank(ref, &na, &da), *bb = pc_model_bank(m, &nb, &db);
    assert_int_equal(nb, na);
    assert_int_equal(db, da);
    assert_memory_equal(bb, ba, sizeof(float) * (size_t)na * (size_t)da);
    const int64_t *ia = pc_model_coreset_indices(ref, &na), *ib = pc_model_coreset_indices(m, &nb);
    assert_non_null(ia);
    assert_non_null(ib);
    assert_int_equal(nb, na);
    assert_memory_equal(ib, ia, sizeof(int64_t) * (size_t)na);
    int32_t ua, ub;
    const int64_t *sa = pc_model_usable_sources(ref, &ua), *sb = pc_model_usable_sources(m, &ub);
    assert_non_null(sa);
    assert_non_null(sb);
    assert_int_equal(ub, ua);
    assert_memory_equal(sb, sa, sizeof(int64_t) * (size_t)ua);

    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/ref.pcm", dir);
    snprintf(pb, sizeof pb, "%s/shard.pcm", dir);
    assert_int_equal(pc_model_save(ref, pa), PC_OK);
    assert_int_equal(pc_model_save(m, pb), PC_OK);
    size_t la, lb;
    unsigned char *fa = read_all(pa, &la), *fb = read_all(pb, &lb);
    assert_int_equal(lb, la);
    assert_memory_equal(fb, fa, la);
    free(fa), free(fb);
    unlink(pa), unlink(pb);
}

/* The sharded fit on R processes: every process succeeds, process 0 alone has a model, equal to ref;
 * the shares cover the list in order and their rows add up to the model's candidates. The model is freed
 * afterwards; j keeps the per-rank on_image_error counts for the caller. */
static void check_fit_shard(fit_job *j, const pc_fit_options *opt, const char *const *paths, size_t n_paths, int32_t R,
                            const pc_model *ref, const char *dir, const char *what) {
    job_init(j, opt, paths, n_paths);
    assert_int_equal(run_procs(R, fit_body, j), 0);
    for (int32_t r = 0; r < R; r++) {
        if (j->st[r]) print_message("%s: rank %d: %s\n", what, r, j->err[r]);
        assert_int_equal(j->st[r], PC_OK);
        if (r == 0) assert_non_null(j->m[r]);
        else assert_null(j->m[r]);
    }
    pc_model_info info;
    assert_int_equal(pc_model_get_info(ref, &info), PC_OK);
    int64_t images = 0, rows = 0;
    for (int32_t r = 0; r < R; r++) {
        size_t lo, hi;
        pc_fit_shard_range(n_paths, opt->batch_size, r, R, &lo, &hi);
        assert_int_equal(lo, (size_t)images); /* contiguous, in rank order */
        assert_int_equal(j->stats[r].images, (int64_t)(hi - lo));
        images += j->stats[r].images, rows += j->stats[r].rows;
    }
    assert_int_equal(images, (int64_t)n_paths);
    assert_int_equal(rows, info.n_patches_total);
    check_same_model(ref, j->m[0], dir, what);
    pc_model_free(j->m[0]);
    j->m[0] = NULL;
    pthread_mutex_destroy(&j->mu);
}

static void test_fit_shard_equals_fit(void **state) {
    (void)state;
    char weights[4096], dir[4096];
    if (!shared_path(weights, sizeof weights, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(dir, sizeof dir, "data/mvtec_ad/bottle/train/good"))
        TEST_SKIP_MSG("../shared absent: no ResNet-18 weights or bottle");
    char tmpl[] = "/tmp/pc_test_shard_XXXXXX";
    const char *tmp = mkdtemp(tmpl);
    assert_non_null(tmp);

    enum { NG = 5 };
    char good[NG][4200], bad[4200];
    for (int i = 0; i < NG; i++) snprintf(good[i], sizeof good[i], "%s/%03d.png", dir, i);
    snprintf(bad, sizeof bad, "%s/bad.png", tmp);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("not an image\n", f);
    fclose(f);
    const char *paths[NG] = {good[0], good[1], good[2], good[3], good[4]};
    /* the unusable file in the middle: batches of 2 are {000, 001} {bad, 002} {003, 004}, so on 3
     * processes it is process 1's (reported by process 0), on 4 process 2's and process 0 has none */
    const char *with_bad[NG + 1] = {good[0], good[1], bad, good[2], good[3], good[4]};

    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = weights;
    opt.batch_size = 2;       /* 5 images: 3 batches, the last one short */
    opt.coreset_ratio = 0.05; /* 5 x 784 patches -> 196 picks: fast, still hundreds of reductions */

    pc_model *ref = NULL;
    assert_int_equal(pc_model_fit(&opt, paths, NG, &ref), PC_OK);
    fit_job *j = malloc(sizeof *j);
    check_fit_shard(j, &opt, paths, NG, 3, ref, tmp, "greedy, 3 processes");
    check_fit_shard(j, &opt, paths, NG, 4, ref, tmp, "greedy, 4 processes (one without a batch)");
    pc_model_free(ref);

    pc_fit_options rnd = opt;
    rnd.sampler = PC_SAMPLER_RANDOM;
    assert_int_equal(pc_model_fit(&rnd, paths, NG, &ref), PC_OK);
    check_fit_shard(j, &rnd, paths, NG, 3, ref, tmp, "random, 3 processes");
    pc_model_free(ref);

    /* pc_model_fit skips the unusable file and reports it once; the sharded fit must give the same
     * model and report it once, on process 0 only, naming the file */
    fit_job refj;
    job_init(&refj, &opt, with_bad, NG + 1);
    pc_fit_options ob = opt;
    ob.on_image_error = on_bad;
    ob.on_image_error_user = &refj.ctx[MAX_PROCS];
    assert_int_equal(pc_model_fit(&ob, with_bad, NG + 1, &ref), PC_OK);
    assert_int_equal(refj.bad_calls[MAX_PROCS], 1);
    pthread_mutex_destroy(&refj.mu);
    for (int32_t R = 3; R <= 4; R++) {
        char what[64];
        snprintf(what, sizeof what, "an unusable file, %d processes", R);
        check_fit_shard(j, &opt, with_bad, NG + 1, R, ref, tmp, what);
        for (int32_t r = 0; r < R; r++) assert_int_equal(j->bad_calls[r], r == 0 ? 1 : 0);
        assert_string_equal(j->bad_path[0], bad);
    }
    pc_model_free(ref);
    free(j);
    unlink(bad);
    rmdir(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_shard_equals_single),
        cmocka_unit_test(test_greedy_shard_ties_lowest_index),
        cmocka_unit_test(test_agree_names_lowest_failing_rank),
        cmocka_unit_test(test_fit_shard_equals_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
