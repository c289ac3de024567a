/*
 * cmd_serve.c - `patchcore serve`: load the models, start the worker pool and the HTTP daemon, then
 * wait for signals on the main thread (every other thread has them blocked): SIGHUP reloads the model
 * files, SIGTERM/SIGINT drain (stop accepting, let in-flight requests finish within
 * --shutdown-timeout) and exit. docs/serve.md documents the verb.
 */
#include "serve.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore serve -m [NAME=]MODEL [-m NAME=MODEL ...] [options]\n"
            "\n"
            "Serve models over HTTP (docs/serve.md). Each model is loaded once and shared by all workers;\n"
            "NAME defaults to the file's name without .pcm. Endpoints:\n"
            "  POST /v1/models/NAME/predict   image bytes (raw body, or multipart/form-data as curl -F\n"
            "                                 sends) -> the JSON object `patchcore predict` prints for it;\n"
            "                                 ?map=png16|npy and ?overlay=png add them as base64 fields,\n"
            "                                 ?name=LABEL sets its \"path\", ?timeout=S a shorter limit\n"
            "  GET  /v1/models, /v1/models/NAME   the models, as `patchcore info` describes them\n"
            "  GET  /healthz, /readyz, /metrics   liveness, readiness (503 while draining), Prometheus\n"
            "  POST /v1/admin/reload          reload every model file (loopback only, or with the token)\n"
            "Signals: SIGHUP reloads the model files (a file that fails to load leaves the old model\n"
            "serving); SIGTERM or SIGINT stop accepting, finish in-flight requests and exit.\n"
            "\n"
            "options:\n"
            "  -m, --model [NAME=]MODEL  a model to serve (repeatable; at most %d)\n"
            "  --listen HOST:PORT     address to listen on (default 127.0.0.1:8080; port 0 picks a free\n"
            "                         one, logged at start). HOST: IPv4, [IPv6] or localhost\n"
            "  --workers N            images predicted at once (default 0: one per 2 threads, the\n"
            "                         default of predict's jobs; docs/threads.md)\n"
            "  --threads N            threads in all, split among the workers (default: the CPUs this\n"
            "                         process may use, within its cgroup CPU quota; OMP_NUM_THREADS)\n"
            "  --queue N              requests that may wait for a worker; beyond, 503 + Retry-After\n"
            "                         (default 16)\n"
            "  --request-timeout S    longest a predict request may take once its body is in: still\n"
            "                         queued then -> 503, predicting -> stopped, 504 (default 30;\n"
            "                         ?timeout=S asks for less)\n"
            "  --max-body BYTES       largest request body, K/M/G suffixes (default 32M); images are also\n"
            "                         limited to %lld pixels\n"
            "  --max-header BYTES     memory per connection for the request line and headers (default 32K;\n"
            "                         larger headers get 431)\n"
            "  --max-connections N    open connections at once (default 64)\n"
            "  --idle-timeout S       close a connection idle (or a client this slow) for S s (default 30)\n"
            "  --shutdown-timeout S   on SIGTERM, how long in-flight requests may take (default 30)\n"
            "  --token-file FILE      require `Authorization: Bearer <first line of FILE>` on every\n"
            "                         endpoint but /healthz and /readyz\n"
            "  --tls-cert FILE, --tls-key FILE   serve HTTPS (PEM files)\n"
            "  --log-format F         text (default) or json: one line per request on stderr (time,\n"
            "                         method, path, model, status, ms, bytes in and out, peer)\n"
            "  --quiet                no per-request lines (start, reload and stop are still logged)\n"
            "  -h, --help             this help\n"
            "\n"
            "exit codes: 0 stopped by a signal, 1 error (a model or the address), 2 bad command line\n",
            SRV_MAX_MODELS, (long long)PC_IMAGE_MAX_PIXELS);
}

static bool parse_size(const char *opt, const char *s, size_t lo, size_t hi, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1ull << 30, end++;
    if (errno || end == s || *end || s[0] == '-' || v > hi / mul || v * mul < lo) {
        cli_error("%s: '%s' is not a size between %zu and %zu bytes", opt, s, lo, hi);
        return false;
    }
    *out = (size_t)(v * mul);
    return true;
}

/* The first line of the token file, without surrounding whitespace. */
static int read_token(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("--token-file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 0077))
        srv_log("warn", "--token-file %s is readable by group or others (chmod 600 it)", path);
    char line[sizeof srv_g.token + 2] = "";
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *s = line, *e;
    while (*s == ' ' || *s == '\t') s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
    if (!got || !*s || strlen(s) >= sizeof srv_g.token) {
        cli_error("--token-file %s: the first line must hold the token (1-%zu characters)", path, sizeof srv_g.token - 1);
        return -1;
    }
    snprintf(srv_g.token, sizeof srv_g.token, "%s", s);
    srv_g.token_len = strlen(s);
    return 0;
}

/* -m value: NAME=PATH, or PATH named after its file. */
static bool split_model(const char *v, char *name, char *path, size_t psize) {
    const char *eq = strchr(v, '=');
    if (eq && (size_t)(eq - v) < SRV_NAME_MAX) {
        memcpy(name, v, (size_t)(eq - v));
        name[eq - v] = '\0';
        snprintf(path, psize, "%s", eq + 1);
    } else {
        snprintf(path, psize, "%s", v);
        const char *base = strrchr(v, '/');
        base = base ? base + 1 : v;
        snprintf(name, SRV_NAME_MAX, "%s", base);
        size_t n = strlen(name);
        if (n > 4 && !strcmp(name + n - 4, ".pcm")) name[n - 4] = '\0';
    }
    if (!srv_name_ok(name)) {
        cli_error("serve: '%s' is not a usable model name (1-63 of A-Z a-z 0-9 . _ -; give -m NAME=MODEL)", name);
        return false;
    }
    return true;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int cmd_serve(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const char *models[SRV_MAX_MODELS];
    int n_models = 0;
    srv_config *cfg = &srv_g.cfg;
    *cfg = (srv_config){.listen = "127.0.0.1:8080", .queue = 16, .max_body = 32u << 20, .max_connections = 64,
                        .conn_timeout_s = 30, .request_timeout_s = 30, .shutdown_timeout_s = 30, .max_header = 32u << 10};
    int32_t workers = 0, threads = 0, v32;
    const char *v;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_match(a, "--model") || strcmp(a, "-m") == 0) {
            if (!cli_take_value(argc, argv, &i, strcmp(a, "-m") ? "--model" : "-m", &v)) return CLI_EXIT_USAGE;
            if (n_models == SRV_MAX_MODELS) {
                cli_error("serve: at most %d models", SRV_MAX_MODELS);
                return CLI_EXIT_USAGE;
            }
            models[n_models++] = v;
        } else if (cli_match(a, "--listen")) {
            if (!cli_take_value(argc, argv, &i, "--listen", &cfg->listen)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--workers")) {
            if (!cli_take_value(argc, argv, &i, "--workers", &v) || !cli_parse_int("--workers", v, 0, 256, &workers))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 1024, &threads))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--queue")) {
            if (!cli_take_value(argc, argv, &i, "--queue", &v) || !cli_parse_int("--queue", v, 1, 100000, &v32))
                return CLI_EXIT_USAGE;
            cfg->queue = v32;
        } else if (cli_match(a, "--max-connections")) {
            if (!cli_take_value(argc, argv, &i, "--max-connections", &v) ||
                !cli_parse_int("--max-connections", v, 1, 100000, &v32))
                return CLI_EXIT_USAGE;
            cfg->max_connections = v32;
        } else if (cli_match(a, "--idle-timeout")) {
            if (!cli_take_value(argc, argv, &i, "--idle-timeout", &v) ||
                !cli_parse_int("--idle-timeout", v, 1, 86400, &v32))
                return CLI_EXIT_USAGE;
            cfg->conn_timeout_s = v32;
        } else if (cli_match(a, "--request-timeout")) {
            if (!cli_take_value(argc, argv, &i, "--request-timeout", &v) ||
                !cli_parse_double("--request-timeout", v, 0.001, 86400, &d))
                return CLI_EXIT_USAGE;
            cfg->request_timeout_s = d;
        } else if (cli_match(a, "--shutdown-timeout")) {
            if (!cli_take_value(argc, argv, &i, "--shutdown-timeout", &v) ||
                !cli_parse_double("--shutdown-timeout", v, 0, 86400, &d))
                return CLI_EXIT_USAGE;
            cfg->shutdown_timeout_s = d;
        } else if (cli_match(a, "--max-body")) {
            if (!cli_take_value(argc, argv, &i, "--max-body", &v) ||
                !parse_size("--max-body", v, 1024, (size_t)1 << 32, &cfg->max_body))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--max-header")) {
            if (!cli_take_value(argc, argv, &i, "--max-header", &v) ||
                !parse_size("--max-header", v, 4096, (size_t)16 << 20, &cfg->max_header))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--token-file")) {
            if (!cli_take_value(argc, argv, &i, "--token-file", &cfg->token_file)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--tls-cert")) {
            if (!cli_take_value(argc, argv, &i, "--tls-cert", &cfg->tls_cert)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--tls-key")) {
            if (!cli_take_value(argc, argv, &i, "--tls-key", &cfg->tls_key)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--log-format")) {
            if (!cli_take_value(argc, argv, &i, "--log-format", &v)) return CLI_EXIT_USAGE;
            if (strcmp(v, "json") && strcmp(v, "text")) {
                cli_error("--log-format: '%s' is not text or json", v);
                return CLI_EXIT_USAGE;
            }
            cfg->log_json = !strcmp(v, "json");
        } else if (strcmp(a, "--quiet") == 0) {
            cfg->quiet = true;
        } else {
            cli_error("serve: unexpected argument '%s' (see patchcore serve --help)", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!n_models) {
        cli_error("serve: needs -m MODEL (see patchcore serve --help)");
        return CLI_EXIT_USAGE;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        cli_error("serve: TLS needs both --tls-cert and --tls-key");
        return CLI_EXIT_USAGE;
    }
    static char names[SRV_MAX_MODELS][SRV_NAME_MAX], paths[SRV_MAX_MODELS][4096];
    for (int k = 0; k < n_models; k++)
        if (!split_model(models[k], names[k], paths[k], sizeof paths[k])) return CLI_EXIT_USAGE;
    if (cli_parse_only) return CLI_EXIT_OK;

    /* Signals go to the main thread only: block them before any thread starts (threads inherit the
     * mask), then wait for them with sigtimedwait below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    atomic_init(&srv_g.draining, false);
    atomic_init(&srv_g.active_requests, 0);
    if (cfg->token_file && read_token(cfg->token_file) != 0) return CLI_EXIT_ERROR;
    pc_set_num_threads(threads);
    threads = pc_get_num_threads();
    if (workers == 0) workers = pc_default_num_jobs(threads);
    cfg->workers = workers;
    cfg->threads = threads;
    const int32_t each = pc_job_threads(threads, workers);
    srv_metrics_init();
    srv_registry_init(&srv_g.models);
    int rc = CLI_EXIT_ERROR;
    for (int k = 0; k < n_models; k++) {
        char err[600];
        if (srv_registry_add(&srv_g.models, names[k], paths[k], err, sizeof err) != 0) {
            srv_log("error", "model '%s': %s", names[k], err);
            srv_registry_free(&srv_g.models);
            return CLI_EXIT_ERROR;
        }
        srv_log("info", "model '%s' loaded from %s in %.0f ms", names[k], paths[k],
                srv_g.models.slots[k].cur->load_seconds * 1e3);
    }
    if (srv_pool_start(workers, each, cfg->queue) != 0) {
        srv_log("error", "cannot start the worker threads");
        srv_registry_free(&srv_g.models);
        return CLI_EXIT_ERROR;
    }
    int port = 0;
    if (srv_http_start(&port) != 0) {
        srv_pool_stop();
        srv_registry_free(&srv_g.models);
        return CLI_EXIT_ERROR;
    }
    char host[128];
    snprintf(host, sizeof host, "%s", cfg->listen);
    char *colon = strrchr(host, ':');
    if (colon) *colon = '\0';
    srv_log("info", "listening on %s://%s:%d (%d model%s, %d worker%s x %d thread%s, queue %d%s)",
            cfg->tls_cert ? "https" : "http", host, port, n_models, n_models == 1 ? "" : "s", (int)workers,
            workers == 1 ? "" : "s", (int)each, each == 1 ? "" : "s", cfg->queue, srv_g.token_len ? ", token" : "");

    const struct timespec tick = {1, 0};
    int sig = 0;
    for (;;) {
        sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig == SIGHUP) {
            srv_log("info", "SIGHUP: reloading the model files");
            srv_registry_reload(&srv_g.models);
        } else if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
    }
    /* Drain: /readyz turns 503 so load balancers stop sending, the listening socket closes, requests
     * already received run to their end (or to the timeout). */
    srv_log("info", "%s: draining %d request%s (up to %.0f s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            atomic_load(&srv_g.active_requests), atomic_load(&srv_g.active_requests) == 1 ? "" : "s",
            cfg->shutdown_timeout_s);
    atomic_store(&srv_g.draining, true);
    srv_http_quiesce();
    const double end = cli_now() + cfg->shutdown_timeout_s;
    const struct timespec now = {0, 0};
    while (atomic_load(&srv_g.active_requests) > 0 && cli_now() < end) {
        int s2 = sigtimedwait(&sigs, NULL, &now);
        if (s2 == SIGTERM || s2 == SIGINT) {
            srv_log("warn", "second signal: not waiting for the remaining requests");
            break;
        }
        sleep_ms(20);
    }
    const int left = atomic_load(&srv_g.active_requests);
    if (left) srv_log("warn", "shutdown: %d request%s still open: queued ones get 503, running ones finish", left,
                      left == 1 ? "" : "s");
    srv_pool_stop();
    srv_http_stop();
    srv_registry_free(&srv_g.models);
    srv_log("info", "stopped");
    rc = CLI_EXIT_OK;
    return rc;
}
