/*
 * test_threads.c - thread counts and images in flight (docs/threads.md): the default count (the CPUs
 * the process may use: a child under `taskset` sees 1; cgroup quota parsing on strings;
 * OMP_NUM_THREADS wins), per-thread counts, pc_jobs_run (never more than the count in all, the serial
 * loop's first failure) and pc_eval_run_jobs bit-identical to one job at the same per-image thread
 * count. Also built with -fsanitize=thread by `make tsan-test`.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "patchcore.h"
#include "testutil.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char self_exe[4096];

/* Under ThreadSanitizer (make tsan-test) no OpenMP team has more than one thread: libgomp is not
 * instrumented, so its barriers would show as races. The per-image counts are then 1. */
#if defined(__SANITIZE_THREAD__)
enum { TEAM = 1 };
#else
enum { TEAM = 2 };
#endif

/* ---- the cgroup parsers ------------------------------------------------------------------- */

static void test_cpu_max_parse(void **state) {
    (void)state;
    assert_int_equal(pc_cpu_limit_from_cpu_max("max 100000"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("max 100000\n"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("150000 100000"), 2);
    assert_int_equal(pc_cpu_limit_from_cpu_max("150000 100000\n"), 2);
    assert_int_equal(pc_cpu_limit_from_cpu_max("50000 100000"), 1);
    assert_int_equal(pc_cpu_limit_from_cpu_max("200000 100000"), 2);
    assert_int_equal(pc_cpu_limit_from_cpu_max("200001 100000"), 3);
    assert_int_equal(pc_cpu_limit_from_cpu_max("1 100000"), 1);
    assert_int_equal(pc_cpu_limit_from_cpu_max("1600000 100000"), 16);
    /* garbage: ignored (no limit) */
    assert_int_equal(pc_cpu_limit_from_cpu_max(""), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("garbage"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("150000"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("150000 0"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("-1 100000"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("15x000 100000"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("150000 1e5"), 0);
    assert_int_equal(pc_cpu_limit_from_cpu_max("99999999999999999999999 100000"), 0); /* overflow */
    assert_int_equal(pc_cpu_limit_from_cpu_max(NULL), 0);
    /* cgroup v1: cpu.cfs_quota_us is -1 when unlimited */
    assert_int_equal(pc_cpu_limit_from_quota("-1\n", "100000\n"), 0);
    assert_int_equal(pc_cpu_limit_from_quota("250000\n", "100000\n"), 3);
    assert_int_equal(pc_cpu_limit_from_quota("100000", "100000"), 1);
    assert_int_equal(pc_cpu_limit_from_quota("abc", "100000"), 0);
    assert_int_equal(pc_cpu_limit_from_quota("100000", ""), 0);
}

/* A fake cgroup tree: the walk over a group's ancestors, v1 and v2, a container's view. */
static void put(const char *dir, const char *rel, const char *text) {
    char p[4096], cmd[8400];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", p);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int32_t limit_of(const char *dir) {
    char self[4096];
    snprintf(self, sizeof self, "%s/self", dir);
    return pc_cgroup_cpu_limit(self, dir);
}

static void test_cgroup_tree(void **state) {
    (void)state;
    char dir[] = "/tmp/pc_cgroup.XXXXXX", cmd[256];
    assert_non_null(mkdtemp(dir));
    /* v2: the tightest of the group and its ancestors */
    put(dir, "self", "0::/a/b\n");
    put(dir, "a/b/cpu.max", "max 100000\n");
    put(dir, "a/cpu.max", "250000 100000\n");
    put(dir, "cpu.max", "max 100000\n");
    assert_int_equal(limit_of(dir), 3);
    put(dir, "cpu.max", "150000 100000\n");
    assert_int_equal(limit_of(dir), 2);
    put(dir, "a/b/cpu.max", "50000 100000\n");
    assert_int_equal(limit_of(dir), 1);
    /* a container without a cgroup namespace: the host's path, the container's group at the root */
    put(dir, "self", "0::/docker/0123abcd\n");
    put(dir, "cpu.max", "200000 100000\n");
    assert_int_equal(limit_of(dir), 2);
    put(dir, "cpu.max", "garbage\n");
    assert_int_equal(limit_of(dir), 0);
    put(dir, "cpu.max", "max 100000\n");
    assert_int_equal(limit_of(dir), 0);
    /* v1: the cpu controller only (cpuset is another one), unlimited group under a limited parent */
    put(dir, "self", "5:cpuset:/g\n4:cpu,cpuacct:/g\n0::/\n");
    put(dir, "cpu,cpuacct/g/cpu.cfs_quota_us", "-1\n");
    put(dir, "cpu,cpuacct/g/cpu.cfs_period_us", "100000\n");
    put(dir, "cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
    put(dir, "cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    put(dir, "cpuset/g/cpu.cfs_quota_us", "100000\n"); /* not the cpu controller: ignored */
    put(dir, "cpuset/g/cpu.cfs_period_us", "100000\n");
    assert_int_equal(limit_of(dir), 3);
    /* no such file: no limit */
    assert_int_equal(pc_cgroup_cpu_limit("/nonexistent/cgroup", dir), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- the default count, seen by child processes --------------------------------------------- */

/* The first line a shell command prints, as an integer (-1 if it failed). */
static long run_child(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[64] = "";
    char *r = fgets(line, sizeof line, p);
    int rc = pclose(p);
    if (!r || rc != 0) return -1;
    return strtol(line, NULL, 10);
}

static void test_default_under_taskset(void **state) {
    (void)state;
    if (system("taskset -V >/dev/null 2>&1") != 0) TEST_SKIP_MSG("taskset (util-linux) absent");
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    int cpu = 0;
    while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &set)) cpu++; /* a CPU we may use */
    assert_true(cpu < CPU_SETSIZE);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "env -u OMP_NUM_THREADS taskset -c %d '%s' --print-default-threads", cpu, self_exe);
    long one = run_child(cmd);
    print_message("taskset -c %d: default %ld threads\n", cpu, one);
    assert_int_equal(one, 1);
    /* the CLI's own --threads default and --jobs rule under the same mask (pc_set_num_threads(0)) */
    snprintf(cmd, sizeof cmd, "env -u OMP_NUM_THREADS taskset -c %d '%s' --print-set-zero", cpu, self_exe);
    assert_int_equal(run_child(cmd), 1);
    /* OMP_NUM_THREADS as the user set it wins over the mask (its first entry) */
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=3,1 taskset -c %d '%s' --print-default-threads", cpu, self_exe);
    assert_int_equal(run_child(cmd), 3);
    /* without a mask: the CPUs we may use, or fewer under a cgroup quota, never more */
    snprintf(cmd, sizeof cmd, "env -u OMP_NUM_THREADS '%s' --print-default-threads", self_exe);
    long all = run_child(cmd);
    print_message("no mask: default %ld threads, affinity mask %d CPUs\n", all, CPU_COUNT(&set));
    assert_true(all >= 1 && all <= CPU_COUNT(&set));
}

/* ---- per-thread counts -------------------------------------------------------------------- */

typedef struct { int32_t local, seen, team; } local_seen;

static void *local_body(void *arg) {
    local_seen *t = arg;
    pc_set_num_threads_local(t->local);
    pc_threads_apply();
    t->seen = pc_get_num_threads();
    if (t->seen > 1 && TEAM == 1) return NULL; /* under TSan: no team of more than one thread */
#pragma omp parallel
    {
#pragma omp single
        t->team = omp_get_num_threads();
    }
    return NULL;
}

static void test_local_count(void **state) {
    (void)state;
    pc_set_num_threads(2 * TEAM);
    local_seen a = {.local = 1}, b = {.local = 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, local_body, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, local_body, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.seen, 1);
    assert_int_equal(a.team, 1);
    assert_int_equal(b.seen, 2 * TEAM); /* no local count: the process-wide one */
    if (TEAM > 1) assert_int_equal(b.team, 2 * TEAM);
    assert_int_equal(pc_get_num_threads(), 2 * TEAM); /* the main thread is untouched */
    pc_set_num_threads_local(3);
    assert_int_equal(pc_get_num_threads(), 3);
    pc_set_num_threads_local(0);
    assert_int_equal(pc_get_num_threads(), 2 * TEAM);
    pc_set_num_threads(0);
    assert_int_equal(pc_get_num_threads(), pc_default_num_threads());
    /* shares and the jobs rule */
    assert_int_equal(pc_job_threads(8, 2), 4);
    assert_int_equal(pc_job_threads(2, 2), 1);
    assert_int_equal(pc_job_threads(3, 2), 1);
    assert_int_equal(pc_job_threads(2, 4), 1); /* at least 1 */
    assert_int_equal(pc_job_threads(5, 0), 5);
    assert_int_equal(pc_default_num_jobs(1), 1);
    assert_int_equal(pc_default_num_jobs(2), 1);
    assert_int_equal(pc_default_num_jobs(3), 1);
    assert_int_equal(pc_default_num_jobs(4), 4 / PC_JOBS_THREADS);
    assert_int_equal(pc_default_num_jobs(16), 16 / PC_JOBS_THREADS);
}

/* ---- pc_jobs_run --------------------------------------------------------------------------- */

enum { N_ITEMS = 40 };

typedef struct {
    int32_t active, max_active, max_product, min_team;
    int32_t ran[N_ITEMS];
    int fail_at[2];
} jobs_probe;

static pc_status probe_item(void *user, size_t i) {
    jobs_probe *p = user;
    int32_t now = __atomic_add_fetch(&p->active, 1, __ATOMIC_SEQ_CST);
    pc_threads_apply(); /* what every public call does first */
    int32_t team = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
    }
    /* hold the item a moment so that the jobs overlap */
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    int32_t seen = __atomic_load_n(&p->active, __ATOMIC_SEQ_CST);
    int32_t m = __atomic_load_n(&p->max_active, __ATOMIC_SEQ_CST);
    while (PC_MAX(now, seen) > m &&
           !__atomic_compare_exchange_n(&p->max_active, &m, PC_MAX(now, seen), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    int32_t prod = PC_MAX(now, seen) * team;
    int32_t mp = __atomic_load_n(&p->max_product, __ATOMIC_SEQ_CST);
    while (prod > mp &&
           !__atomic_compare_exchange_n(&p->max_product, &mp, prod, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    int32_t mt = __atomic_load_n(&p->min_team, __ATOMIC_SEQ_CST);
    while (team < mt && !__atomic_compare_exchange_n(&p->min_team, &mt, team, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    __atomic_store_n(&p->ran[i], 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&p->active, 1, __ATOMIC_SEQ_CST);
    if ((int)i == p->fail_at[0] || (int)i == p->fail_at[1])
        return pc_fail(i == 9 ? PC_ERR_IO : PC_ERR_FORMAT, "item %zu failed", i);
    return PC_OK;
}

static void test_jobs_never_oversubscribe(void **state) {
    (void)state;
    const int32_t threads = 2 * TEAM, jobs = 2;
    pc_set_num_threads(threads);
    jobs_probe p = {.min_team = 1 << 20, .fail_at = {-1, -1}};
    assert_int_equal(pc_jobs_run(jobs, pc_job_threads(threads, jobs), N_ITEMS, probe_item, &p), PC_OK);
    print_message("%d jobs on %d threads: at most %d items at once, jobs x team at most %d, team >= %d\n", jobs,
                  threads, p.max_active, p.max_product, p.min_team);
    for (int i = 0; i < N_ITEMS; i++) assert_int_equal(p.ran[i], 1);
    assert_true(p.max_active <= jobs);
    assert_true(p.max_product <= threads);
    assert_int_equal(p.min_team, threads / jobs);
    assert_int_equal(pc_get_num_threads(), threads); /* the caller's count is back */
    /* one job: the caller's whole count */
    jobs_probe q = {.min_team = 1 << 20, .fail_at = {-1, -1}};
    if (TEAM > 1) { /* a team of `threads` */
        assert_int_equal(pc_jobs_run(1, threads, 5, probe_item, &q), PC_OK);
        assert_int_equal(q.min_team, threads);
    }
    pc_set_num_threads(0);
}

static void test_jobs_first_failure(void **state) {
    (void)state;
    pc_set_num_threads(1); /* one thread per item whatever the jobs: only the order matters here */
    for (int32_t jobs = 1; jobs <= 5; jobs += 2) {
        jobs_probe p = {.min_team = 1 << 20, .fail_at = {9, 5}};
        pc_status st = pc_jobs_run(jobs, 1, N_ITEMS, probe_item, &p);
        /* the serial loop's failure: item 5 (PC_ERR_FORMAT), not item 9, with its message */
        assert_int_equal(st, PC_ERR_FORMAT);
        assert_string_equal(pc_last_error(), "item 5 failed");
        for (int i = 0; i <= 5; i++) assert_int_equal(p.ran[i], 1); /* all items before it ran */
        int after = 0;
        for (int i = 6; i < N_ITEMS; i++) after += p.ran[i];
        print_message("%d jobs: %d items after the failing one were started\n", jobs, after);
        if (jobs == 1) assert_int_equal(after, 0); /* the serial loop stops at once */
    }
    pc_set_num_threads(0);
}

/* ---- pc_eval_run_jobs = the serial loop ---------------------------------------------------- */

enum { S = 64 };

static int stop_at(void *user, const char *stage, int64_t done, int64_t total) {
    (void)stage, (void)total;
    return done >= *(int64_t *)user;
}

static void test_eval_jobs_identical(void **state) {
    (void)state;
    char w[2048], tr[2][2048], root[2048];
    if (!shared_path(w, sizeof w, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(tr[0], sizeof tr[0], "data/mvtec_ad/bottle/train/good/000.png") ||
        !shared_path(tr[1], sizeof tr[1], "data/mvtec_ad/bottle/train/good/001.png") ||
        !shared_path(root, sizeof root, "data/mvtec_ad/bottle"))
        TEST_SKIP_MSG("../shared absent");
    pc_set_num_threads(1);
    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = w;
    opt.resize = S;
    opt.crop = S;
    const char *paths[2] = {tr[0], tr[1]};
    pc_model *m;
    assert_int_equal(pc_model_fit(&opt, paths, 2, &m), PC_OK);
    pc_dataset *ds;
    assert_int_equal(pc_dataset_open(root, 0, &ds), PC_OK);
    const size_t n = ds->n_test, npix = n * S * S;
    pc_prediction *pr[2] = {calloc(n, sizeof(pc_prediction)), calloc(n, sizeof(pc_prediction))};
    pc_geometry *ge[2] = {calloc(n, sizeof(pc_geometry)), calloc(n, sizeof(pc_geometry))};
    float *maps[2] = {calloc(npix, sizeof(float)), calloc(npix, sizeof(float))};
    uint8_t *masks[2] = {calloc(npix, 1), calloc(npix, 1)};
    pc_eval_result r[2];
    /* one job on one thread, then 2 jobs on 2 threads (1 each): same per-image thread count */
    for (int k = 0; k < 2; k++) {
        pc_set_num_threads(k + 1);
        pc_eval_detail d = {pr[k], ge[k], maps[k], masks[k]};
        assert_int_equal(pc_eval_run_jobs(&r[k], m, ds, PC_MASK_RULE_DEFAULT, k + 1, NULL, NULL, &d), PC_OK);
    }
    print_message("%zu images: AUROC %.4f / %.4f, mean %.1f / %.1f ms per image\n", n, r[0].image_auroc,
                  r[1].image_auroc, r[0].mean_predict_ms, r[1].mean_predict_ms);
    assert_true(n > 8);
    for (size_t i = 0; i < n; i++) assert_true(pr[0][i].score == pr[1][i].score);
    assert_memory_equal(maps[0], maps[1], npix * sizeof(float));
    assert_memory_equal(masks[0], masks[1], npix);
    assert_memory_equal(ge[0], ge[1], n * sizeof(pc_geometry));
    assert_true(r[0].image_auroc == r[1].image_auroc && r[0].pixel_auroc == r[1].pixel_auroc &&
                r[0].aupro == r[1].aupro && r[0].image_f1_max == r[1].image_f1_max &&
                r[0].pixel_f1_max == r[1].pixel_f1_max && r[0].pixel_f1_threshold == r[1].pixel_f1_threshold);
    /* cancelling from the progress callback stops it, with any number of jobs */
    int64_t at = 5;
    pc_eval_result rc;
    assert_int_equal(pc_eval_run_jobs(&rc, m, ds, PC_MASK_RULE_DEFAULT, 2, stop_at, &at, NULL), PC_ERR_CANCELLED);
    pc_eval_result_free(&rc);
    for (int k = 0; k < 2; k++) {
        pc_eval_result_free(&r[k]);
        free(pr[k]), free(ge[k]), free(maps[k]), free(masks[k]);
    }
    pc_dataset_free(ds);
    pc_model_free(m);
    pc_set_num_threads(0);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--print-default-threads") == 0) {
        printf("%d\n", (int)pc_default_num_threads());
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--print-set-zero") == 0) {
        pc_set_num_threads(0);
        pc_threads_apply();
        printf("%d\n", omp_get_max_threads());
        return 0;
    }
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (len > 0) self_exe[len] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_max_parse),           cmocka_unit_test(test_cgroup_tree),
        cmocka_unit_test(test_default_under_taskset),
        cmocka_unit_test(test_local_count),             cmocka_unit_test(test_jobs_never_oversubscribe),
        cmocka_unit_test(test_jobs_first_failure),      cmocka_unit_test(test_eval_jobs_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
