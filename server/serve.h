/*
 * serve.h - `patchcore serve`, an HTTP inference service over libpatchcore (docs/serve.md). One file
 * per concern:
 *   cmd_serve.c  the verb: options, start-up, signals (SIGHUP reload, SIGTERM/SIGINT drain), shutdown
 *   http.c       libmicrohttpd wiring: limits, bodies, bearer token, responses, the request log
 *   routes.c     the endpoints: request line -> handler (srv_route is pure, for the fuzz target)
 *   models.c     the registry of named models: refcounted handles swapped atomically on reload
 *   workers.c    the bounded queue and the inference threads (decode, predict, encode, JSON)
 *   metrics.c    counters and histograms, rendered as Prometheus text
 *   parse.c      pure parsing of what clients send (routes, names, multipart bodies) and base64; fuzzed
 * The library never prints; the server logs on stderr.
 */
#ifndef PC_SERVE_H
#define PC_SERVE_H

#include "../cli/cli.h" /* by path: fuzz/fuzz_serve.c and its replay test build parse.c alone */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SRV_MAX_MODELS = 32, SRV_NAME_MAX = 64 };

/* ---- models.c: named models, each loaded once and shared by every worker ---------------------- */

/* One loaded model file. Requests hold a reference for as long as they use it, so a reload can swap
 * in a new one while in-flight requests finish on the old; the last release frees it. */
typedef struct srv_model {
    pc_model *model;
    pc_model_info info;
    atomic_int refs;
    double load_seconds; /* how long pc_model_load took */
    double loaded_at;    /* unix time */
    uint64_t generation; /* 1 for the first load, +1 per successful reload */
} srv_model;

typedef struct srv_slot {
    char name[SRV_NAME_MAX];
    char path[4096];
    srv_model *cur;                    /* under the registry lock */
    uint64_t reloads_ok, reloads_failed;
    bool last_reload_failed;
    char last_error[512];
} srv_slot;

typedef struct srv_registry {
    pthread_mutex_t lock;        /* guards every slot's cur and counters */
    pthread_mutex_t reload_lock; /* one reload at a time */
    srv_slot slots[SRV_MAX_MODELS];
    int n;
} srv_registry;

/* A valid model name: 1..63 of [A-Za-z0-9._-], not starting with '.' (parse.c). */
bool srv_name_ok(const char *name);
void srv_registry_init(srv_registry *reg);
/* Load path as name; 0, or -1 with the reason in err. */
int srv_registry_add(srv_registry *reg, const char *name, const char *path, char *err, size_t errsize);
/* A reference to the model called name (NULL when there is none); release it with srv_model_release. */
srv_model *srv_model_acquire(srv_registry *reg, const char *name);
/* The same by slot index (0 <= i < n). */
srv_model *srv_model_acquire_at(srv_registry *reg, int i);
void srv_model_release(srv_model *m);
/* Reload every model file (one at a time); a file that fails leaves the old model serving. Returns
 * the number that failed; each outcome is logged. */
int srv_registry_reload(srv_registry *reg);
void srv_registry_free(srv_registry *reg);

/* ---- metrics.c ----------------------------------------------------------------------------------- */

void srv_metrics_init(void);
/* One finished request: model ("" when none), HTTP status, latency in seconds. */
void srv_metrics_request(const char *model, int status, double seconds);
/* Render everything as Prometheus text exposition (format 0.0.4) into a new malloc'ed string. */
char *srv_metrics_render(srv_registry *reg, size_t *len);

/* ---- workers.c: a bounded queue in front of N inference threads -------------------------------- */

typedef enum srv_map_kind { SRV_MAP_NONE = 0, SRV_MAP_PNG16, SRV_MAP_NPY } srv_map_kind;

typedef struct srv_job {
    /* in */
    srv_model *model;
    const uint8_t *image;
    size_t image_len;
    const char *name;     /* "path" of the JSON: the uploaded file's name, or "-" */
    const char *model_name;
    srv_map_kind map;
    bool overlay;
    /* The request's time limit (docs/serve.md, "Timeouts"): deadline is the cli_now() time by which the
     * answer is due, timeout_s the limit it came from (for the message); deadline 0: none. A job still
     * queued at its deadline is withdrawn (503); a running one stops at the prediction's next stage
     * check (pc_set_deadline_local) and answers 504. */
    double deadline, timeout_s;
    /* cli_now() when a worker took the job and when it finished it (for the request log) */
    double t_start, t_end;
    /* out: a JSON body and its status (200, or an error JSON with 4xx/5xx) */
    int status;
    char *body;
    size_t body_len;
    /* pool state, under the pool lock */
    int state; /* SRV_JOB_* */
} srv_job;

enum { SRV_JOB_QUEUED = 0, SRV_JOB_RUNNING, SRV_JOB_DONE, SRV_JOB_CANCELLED };

/* Start `workers` threads, each predicting on threads_each threads, behind a queue of `queue` jobs. */
int srv_pool_start(int workers, int32_t threads_each, int queue);
/* Queue a job; -1 when the queue is full (the caller answers 503) or the pool is stopping. */
int srv_pool_submit(srv_job *job);
/* Wait for a job until timeout_s: 0 when done; -1 when it timed out still queued (it is then
 * withdrawn). A job that has started is waited for to its end, which its deadline bounds (a
 * prediction past it stops at its next stage check and the job ends with 504). */
int srv_pool_wait(srv_job *job, double timeout_s);
/* Jobs waiting, jobs running. */
void srv_pool_depth(int *queued, int *running, int *capacity, int *workers);
/* Withdraw every queued job (their waiters get -1), finish the running ones, join the threads. */
void srv_pool_stop(void);

/* ---- parse.c: multipart bodies and base64 (pure; fuzz/fuzz_serve.c) -------------------------- */

/* The boundary of a Content-Type "multipart/form-data; boundary=..." (quoted or not) into out;
 * false when the type is not multipart/form-data or the boundary is missing, empty or longer than 70
 * characters (RFC 2046). */
bool srv_multipart_boundary(const char *content_type, char *out, size_t size);
/* Find the file part of a multipart body: the part named `field` when present, else the first part
 * with a filename, else the first part. data and data_len point into body; filename (may be "") is copied.
 * 0, or -1 with the problem in err (no parts, unterminated part, missing closing boundary, ...). */
int srv_multipart_find(const uint8_t *body, size_t len, const char *boundary, const char *field,
                       const uint8_t **data, size_t *data_len, char *filename, size_t fn_size, char *err,
                       size_t errsize);
/* Base64 (RFC 4648, padded) of n bytes as a new malloc'ed NUL-terminated string; NULL when out of memory. */
char *srv_base64(const uint8_t *src, size_t n, size_t *out_len);

/* ---- routes.c ------------------------------------------------------------------------------------ */

typedef enum srv_route_kind {
    SRV_ROUTE_NOT_FOUND = 0,
    SRV_ROUTE_HEALTHZ,
    SRV_ROUTE_READYZ,
    SRV_ROUTE_METRICS,
    SRV_ROUTE_MODELS,       /* GET /v1/models */
    SRV_ROUTE_MODEL,        /* GET /v1/models/{name} */
    SRV_ROUTE_PREDICT,      /* POST /v1/models/{name}/predict */
    SRV_ROUTE_RELOAD        /* POST /v1/admin/reload */
} srv_route_kind;

typedef struct srv_route {
    srv_route_kind kind;
    const char *method;      /* the method the route takes ("GET"/"POST") */
    char model[SRV_NAME_MAX];
    bool bad_name;           /* /v1/models/{name}... with a name that is not valid */
} srv_route;

/* Match a request path (no query string: MHD strips it) to a route (parse.c; pure). */
void srv_route_match(const char *url, srv_route *out);

/* One HTTP request, from its headers to its completion (http.c owns it; routes.c answers it). */
struct MHD_Connection;
typedef struct srv_request {
    double t0;
    srv_route route;
    char method[8];
    char url[160];        /* sanitised for the log: printable ASCII without quotes or backslashes */
    char peer[64];
    bool loopback;        /* the peer is 127.0.0.0/8 or ::1 */
    uint8_t *body;
    size_t len, cap;      /* body bytes kept; capacity */
    size_t received;      /* body bytes received (more than len when too large) */
    bool too_large;
    int reject;           /* an error found on the headers, answered once the body is in (0: none) */
    char reject_msg[300];
    const char *reject_hdr, *reject_val;
    int status;           /* the status answered (0: none yet) */
    size_t bytes_out;
    double queue_ms, work_ms; /* a predict that reached a worker: its wait for one, and its time on it
                                 (decode, predict, JSON); -1 otherwise. For the request log. */
} srv_request;

/* The handler of a request whose body has been received (routes.c). */
int srv_dispatch(struct MHD_Connection *c, srv_request *r);
/* Checks on the headers alone (routes.c): 0, or the status of an error recorded in r->reject*. The
 * error is answered after the body has been read and dropped (answering before it and closing would
 * make the kernel reset the connection under a client still sending, losing the answer), except 413
 * for a declared Content-Length over --max-body, answered at once (curl's Expect: 100-continue then
 * never sends the body). */
int srv_precheck(struct MHD_Connection *c, srv_request *r);

/* Queue a response (http.c). body is taken over (freed by MHD) when owned, else copied. Adds
 * Content-Type, Cache-Control: no-store, X-Content-Type-Options: nosniff, and Connection: close while
 * draining; hdr/value (may be NULL) one more header. Returns MHD's result (an int). */
int srv_respond(struct MHD_Connection *c, srv_request *r, int status, const char *ctype, char *body, size_t len,
                bool owned, const char *hdr, const char *value);
/* {"error": MSG, "status": N} with a trailing newline, as a new malloc'ed string. */
char *srv_json_error(int status, const char *msg, size_t *len);
/* srv_respond of srv_json_error(printf-style message). */
int srv_respond_error(struct MHD_Connection *c, srv_request *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether the request carries "Authorization: Bearer <token>" matching --token-file (true when no
 * token is configured). Constant time in the token's length. */
bool srv_authorized(struct MHD_Connection *c);

/* ---- http.c: the server's state and settings ---------------------------------------------------- */

typedef struct srv_config {
    const char *listen;      /* "HOST:PORT" */
    int workers;
    int32_t threads;
    int queue;
    size_t max_body;
    int max_connections;
    int conn_timeout_s;      /* idle connection (slow client) timeout */
    double request_timeout_s;/* the longest a request waits in the queue */
    double shutdown_timeout_s;
    size_t max_header;       /* MHD's per-connection memory: headers + read buffer */
    const char *token_file;
    const char *tls_cert, *tls_key;
    bool log_json;
    bool quiet;              /* no per-request log lines */
} srv_config;

typedef struct srv_state {
    srv_config cfg;
    srv_registry models;
    char token[256];
    size_t token_len;
    atomic_bool draining;
    atomic_int active_requests; /* requests between their headers and their completion */
} srv_state;

extern srv_state srv_g;

/* Start the daemon on cfg.listen; 0 and the bound port, or -1 after logging why. */
int srv_http_start(int *port);
/* Stop accepting connections (the drain of a graceful shutdown). */
void srv_http_quiesce(void);
/* Close every connection and join MHD's threads. */
void srv_http_stop(void);

/* A log line on stderr, text or JSON by --log-format (the server's own events, not requests). */
void srv_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double srv_wall_time(void);

int cmd_serve(int argc, char **argv);

#endif
