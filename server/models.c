/*
 * models.c - the named models a server holds. Each name maps to a file and to the model currently
 * loaded from it, a refcounted srv_model: a request acquires it (under the registry lock, a pointer
 * copy and an increment), predicts without any lock, and releases it. A reload loads the file into a
 * new srv_model with no lock held, then swaps the pointer under the lock: requests that started before
 * keep the old model until they release it, and the last release frees it. A file that fails to load
 * leaves the old model in place; the failure is logged and counted (metrics.c).
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

void srv_registry_init(srv_registry *reg) {
    memset(reg, 0, sizeof *reg);
    pthread_mutex_init(&reg->lock, NULL);
    pthread_mutex_init(&reg->reload_lock, NULL);
}

static srv_model *load(const char *path, char *err, size_t errsize) {
    srv_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errsize, "%s: out of memory", path);
        return NULL;
    }
    double t0 = cli_now();
    pc_status st = pc_model_load(path, &m->model);
    if (st) {
        snprintf(err, errsize, "%s", *pc_last_error() ? pc_last_error() : pc_status_str(st));
        free(m);
        return NULL;
    }
    m->load_seconds = cli_now() - t0;
    m->loaded_at = srv_wall_time();
    pc_model_get_info(m->model, &m->info);
    atomic_init(&m->refs, 1); /* the registry's reference */
    return m;
}

int srv_registry_add(srv_registry *reg, const char *name, const char *path, char *err, size_t errsize) {
    if (reg->n >= SRV_MAX_MODELS) {
        snprintf(err, errsize, "at most %d models", SRV_MAX_MODELS);
        return -1;
    }
    for (int i = 0; i < reg->n; i++)
        if (strcmp(reg->slots[i].name, name) == 0) {
            snprintf(err, errsize, "two models are called '%s' (give -m NAME=MODEL)", name);
            return -1;
        }
    if (strlen(path) >= sizeof reg->slots[0].path) {
        snprintf(err, errsize, "%s: path too long", path);
        return -1;
    }
    srv_model *m = load(path, err, errsize);
    if (!m) return -1;
    m->generation = 1;
    srv_slot *s = &reg->slots[reg->n];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->cur = m;
    reg->n++;
    return 0;
}

srv_model *srv_model_acquire_at(srv_registry *reg, int i) {
    pthread_mutex_lock(&reg->lock);
    srv_model *m = reg->slots[i].cur;
    if (m) atomic_fetch_add(&m->refs, 1);
    pthread_mutex_unlock(&reg->lock);
    return m;
}

srv_model *srv_model_acquire(srv_registry *reg, const char *name) {
    for (int i = 0; i < reg->n; i++) /* names and n are fixed once serving */
        if (strcmp(reg->slots[i].name, name) == 0) return srv_model_acquire_at(reg, i);
    return NULL;
}

void srv_model_release(srv_model *m) {
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
        pc_model_free(m->model);
        free(m);
    }
}

int srv_registry_reload(srv_registry *reg) {
    pthread_mutex_lock(&reg->reload_lock);
    /* Loading runs beside busy workers: give it one worker's share of the threads, not all of them
     * (thread-local, so only this thread's calls; cleared below). */
    pc_set_num_threads_local(pc_job_threads(srv_g.cfg.threads, srv_g.cfg.workers));
    int failed = 0;
    for (int i = 0; i < reg->n; i++) {
        srv_slot *s = &reg->slots[i];
        char err[512];
        srv_model *m = load(s->path, err, sizeof err); /* no registry lock held: requests go on */
        pthread_mutex_lock(&reg->lock);
        srv_model *old = NULL;
        if (m) {
            old = s->cur;
            m->generation = old ? old->generation + 1 : 1;
            s->cur = m;
            s->reloads_ok++;
            s->last_reload_failed = false;
            s->last_error[0] = '\0';
        } else {
            s->reloads_failed++;
            s->last_reload_failed = true;
            snprintf(s->last_error, sizeof s->last_error, "%s", err);
        }
        uint64_t gen = s->cur ? s->cur->generation : 0;
        pthread_mutex_unlock(&reg->lock);
        if (m) {
            srv_log("info", "reload: model '%s' from %s: ok (generation %llu, %.0f ms)", s->name, s->path,
                    (unsigned long long)gen, m->load_seconds * 1e3);
        } else {
            failed++;
            srv_log("error", "reload: model '%s' from %s failed, still serving generation %llu: %s", s->name,
                    s->path, (unsigned long long)gen, err);
        }
        srv_model_release(old); /* freed now, or by the last request still on it */
    }
    pc_set_num_threads_local(0);
    pthread_mutex_unlock(&reg->reload_lock);
    return failed;
}

void srv_registry_free(srv_registry *reg) {
    for (int i = 0; i < reg->n; i++) {
        srv_model_release(reg->slots[i].cur);
        reg->slots[i].cur = NULL;
    }
    reg->n = 0;
    pthread_mutex_destroy(&reg->lock);
    pthread_mutex_destroy(&reg->reload_lock);
}
