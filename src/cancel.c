/*
 * cancel.c - the per-thread prediction deadline (pc_set_deadline_local). A server bounds a request's
 * time by setting a deadline on the worker thread before pc_model_predict; the prediction checks it
 * between its stages (pc_deadline_check, called from src/model.c) and inside the kNN search, between
 * clusters or bank blocks (src/knn.c, through pc_deadline_get/pc_deadline_passed, since its parallel
 * loops run on threads that do not have the deadline), and gives up with PC_ERR_CANCELLED at the first
 * check past it. Nothing crosses threads: no other thread has to interrupt the worker,
 * and the check is a clock read (CLOCK_MONOTONIC: immune to wall-clock changes).
 */
#include "internal.h"

#include <math.h>
#include <time.h>

static _Thread_local double tl_deadline; /* CLOCK_MONOTONIC seconds; 0: none */

double pc_monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void pc_set_deadline_local(double seconds) {
    tl_deadline = (seconds > 0 && isfinite(seconds)) ? pc_monotonic_seconds() + seconds : 0;
}

double pc_deadline_get(void) { return tl_deadline; }

bool pc_deadline_passed(double deadline) { return deadline > 0 && pc_monotonic_seconds() >= deadline; }

pc_status pc_deadline_check(const char *stage) {
    if (tl_deadline == 0) return PC_OK;
    const double late = pc_monotonic_seconds() - tl_deadline;
    if (late < 0) return PC_OK;
    return pc_fail(PC_ERR_CANCELLED, "deadline passed %.1f ms ago, stopped %s", late * 1e3, stage);
}
