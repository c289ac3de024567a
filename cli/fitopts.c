/*
 * fitopts.c - the options that say how a model is built, shared by `fit` and `benchmark`, plus input
 * collection (files and directories), progress display and unique output names.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A size in bytes: a number with an optional K, M, G or T suffix (powers of 1024, like sort -S and
 * /usr/bin/time's kilobytes), optionally followed by B or iB: 2G, 1500M, 1.5GiB, 123456789. */
bool cli_parse_size(const char *opt, const char *s, int64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    if (end != s && *end) {
        const char *units = "KMGT";
        const char *u = strchr(units, toupper((unsigned char)*end));
        if (u) {
            for (const char *q = units; q <= u; q++) mul *= 1024;
            end++;
            if (*end == 'i' && end[1] == 'B') end += 2;
            else if (*end == 'B') end++;
        } else if (*end == 'B' && !end[1]) {
            end++;
        }
    }
    if (errno || end == s || *end || !isfinite(v) || v < 0 || v * mul >= 9.2e18) {
        cli_error("%s: '%s' is not a size such as 2G, 1500M or 4096K (0 = unlimited)", opt, s);
        return false;
    }
    *out = (int64_t)(v * mul);
    return true;
}

/* The i-th item (0-based) of a list separated by sep into buf; false when there are fewer. */
static bool list_item(const char *list, char sep, int i, char *buf, size_t size) {
    const char *p = list;
    for (int k = 0; k < i; k++) {
        p = strchr(p, sep);
        if (!p) return false;
        p++;
    }
    const char *e = strchr(p, sep);
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n >= size) n = size - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return true;
}

static int list_count(const char *list, char sep) {
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == sep;
    return n;
}

static const char *const ARCH_LIST = "resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2, "
                                     "wide_resnet101_2, resnext50_32x4d, resnext101_32x8d, densenet121, densenet161, "
                                     "densenet169, densenet201";

static bool parse_arch(const char *opt, const char *v, pc_arch *out) {
    *out = pc_arch_from_name(v);
    if (*out != PC_ARCH_UNKNOWN) return true;
    cli_error("%s: unknown architecture '%s' (%s)", opt, v, ARCH_LIST);
    return false;
}

/* A comma-separated list of layer names (layer2, denseblock2, features.denseblock2 or 2) for arch
 * (PC_ARCH_UNKNOWN: any family's names). */
static bool parse_layers(const char *opt, const char *v, pc_arch arch, int32_t *layers, int32_t *n) {
    char item[64];
    *n = 0;
    for (int k = 0; list_item(v, ',', k, item, sizeof item); k++) {
        const int32_t l = pc_layer_from_name(arch, item);
        if (!l || *n == PC_MAX_LAYERS) {
            cli_error("%s: '%s' is not a comma-separated list of up to %d layers (layer1..layer4 for ResNets, "
                      "denseblock1..denseblock4 for DenseNets)%s%s", opt, v, PC_MAX_LAYERS,
                      arch != PC_ARCH_UNKNOWN ? "; the backbone is " : "",
                      arch != PC_ARCH_UNKNOWN ? pc_arch_name(arch) : "");
            return false;
        }
        layers[(*n)++] = l;
    }
    if (*n == 0) {
        cli_error("%s: empty", opt);
        return false;
    }
    return true;
}

bool cli_load_roi(const char *opt, const char *path, pc_image *out) {
    pc_status st = pc_image_load_grey(path, out);
    if (st) {
        cli_error("%s: cannot read the mask: %s", opt, *pc_last_error() ? pc_last_error() : pc_status_str(st));
        return false;
    }
    const size_t n = (size_t)out->width * (size_t)out->height;
    for (size_t k = 0; k < n; k++)
        if (out->data[k]) return true;
    cli_error("%s: %s is all black (%dx%d): nothing would be inspected (white = inspect)", opt, path,
              (int)out->width, (int)out->height);
    pc_image_free(out);
    return false;
}

/* The --roi mask of a fit, decoded when the option is read (one fit per process). */
static pc_image fit_roi;

bool cli_parse_fit_option(int argc, char **argv, int *i, pc_fit_options *o, int32_t *threads, bool *matched) {
    return cli_parse_fit_option_members(argc, argv, i, o, NULL, threads, matched);
}

bool cli_parse_fit_option_members(int argc, char **argv, int *i, pc_fit_options *o, cli_members *mem,
                                  int32_t *threads, bool *matched) {
    const char *a = argv[*i], *v;
    double d;
    *matched = true;
#define TAKE(name) if (!cli_take_value(argc, argv, i, name, &v)) return false
    /* an ensemble's per-member lists (one value for every member, or one per member): kept raw for
     * cli_members_expand, checked item by item there */
#define MEMBER_LIST(field, sep)                                                                                \
    if (mem && strchr(v, sep)) {                                                                               \
        mem->field = v;                                                                                        \
        return true;                                                                                           \
    }                                                                                                          \
    if (mem) mem->field = NULL;
    if (cli_match(a, "--weights")) {
        TAKE("--weights");
        if (access(v, F_OK) != 0) { /* an existing file whose name has a comma is one file, not a list */
            MEMBER_LIST(weights, ',');
        } else if (mem) {
            mem->weights = NULL;
        }
        o->weights = v;
    } else if (cli_match(a, "--backbone")) {
        TAKE("--backbone");
        MEMBER_LIST(backbone, ',');
        return parse_arch("--backbone", v, &o->arch);
    } else if (cli_match(a, "--layers") || cli_match(a, "--layer")) {
        TAKE(cli_match(a, "--layers") ? "--layers" : "--layer");
        MEMBER_LIST(layers, ';');
        return parse_layers("--layers", v, PC_ARCH_UNKNOWN, o->layers, &o->n_layers);
    } else if (cli_match(a, "--resize")) {
        TAKE("--resize");
        MEMBER_LIST(resize, ',');
        return cli_parse_int("--resize", v, 1, 4096, &o->resize);
    } else if (cli_match(a, "--crop")) {
        TAKE("--crop");
        MEMBER_LIST(crop, ',');
        return cli_parse_int("--crop", v, 16, 4096, &o->crop);
    } else if (cli_match(a, "--patch")) {
        TAKE("--patch");
        if (!cli_parse_int("--patch", v, 1, 15, &o->patch)) return false;
        if (o->patch % 2 == 0) {
            cli_error("--patch: must be odd");
            return false;
        }
    } else if (cli_match(a, "--pre-dim")) {
        TAKE("--pre-dim");
        return cli_parse_int("--pre-dim", v, 1, 65536, &o->pre_dim);
    } else if (cli_match(a, "--dim")) {
        TAKE("--dim");
        return cli_parse_int("--dim", v, 1, 65536, &o->dim);
    } else if (cli_match(a, "--coreset")) {
        TAKE("--coreset");
        if (!cli_parse_double("--coreset", v, 0, 1, &d)) return false;
        if (d <= 0) {
            cli_error("--coreset: the ratio must be in (0, 1]");
            return false;
        }
        o->coreset_ratio = d;
        o->coreset_size = 0;
    } else if (cli_match(a, "--coreset-size")) {
        TAKE("--coreset-size");
        int32_t n;
        if (!cli_parse_int("--coreset-size", v, 1, INT32_MAX, &n)) return false;
        o->coreset_size = n;
    } else if (cli_match(a, "--sampler")) {
        TAKE("--sampler");
        if (!strcmp(v, "approx")) o->sampler = PC_SAMPLER_APPROX_GREEDY;
        else if (!strcmp(v, "random")) o->sampler = PC_SAMPLER_RANDOM;
        else if (!strcmp(v, "none")) o->sampler = PC_SAMPLER_NONE;
        else {
            cli_error("--sampler: '%s' is not approx, random or none", v);
            return false;
        }
    } else if (cli_match(a, "--k")) {
        TAKE("--k");
        return cli_parse_int("--k", v, 1, 1024, &o->k);
    } else if (cli_match(a, "--seed")) {
        TAKE("--seed");
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') {
            cli_error("--seed: '%s' is not a non-negative whole number", v);
            return false;
        }
        o->seed = s;
    } else if (cli_match(a, "--reweight")) {
        TAKE("--reweight");
        return cli_parse_int("--reweight", v, 0, 1024, &o->reweight_b);
    } else if (cli_match(a, "--batch")) {
        TAKE("--batch");
        return cli_parse_int("--batch", v, 1, 256, &o->batch_size);
    } else if (cli_match(a, "--threads")) {
        TAKE("--threads");
        return cli_parse_int("--threads", v, 0, 1024, threads);
    } else if (cli_match(a, "--max-memory")) {
        TAKE("--max-memory");
        return cli_parse_size("--max-memory", v, &o->max_memory);
    } else if (cli_match(a, "--bn")) {
        TAKE("--bn");
        return cli_parse_bn("--bn", v, &o->bn_stats);
    } else if (cli_match(a, "--precision")) {
        TAKE("--precision");
        return cli_parse_precision("--precision", v, &o->precision);
    } else if (cli_match(a, "--jobs")) {
        TAKE("--jobs");
        return cli_parse_int("--jobs", v, 0, 256, &o->jobs);
    } else if (cli_match(a, "--roi")) {
        TAKE("--roi");
        pc_image_free(&fit_roi);
        o->roi = NULL;
        if (!cli_load_roi("--roi", v, &fit_roi)) return false;
        o->roi = &fit_roi;
    } else {
        *matched = false;
    }
#undef MEMBER_LIST
#undef TAKE
    return true;
}

void cli_members_free(cli_members *mem) {
    for (size_t i = 0; i < sizeof mem->owned / sizeof mem->owned[0]; i++) {
        free(mem->owned[i]);
        mem->owned[i] = NULL;
    }
}

bool cli_members_expand(cli_members *mem, const pc_fit_options *base, pc_fit_options *out, int32_t max,
                        int32_t *n_out) {
    const struct {
        const char *opt, *list;
        char sep;
    } L[] = {{"--backbone", mem->backbone, ','}, {"--weights", mem->weights, ','}, {"--layers", mem->layers, ';'},
             {"--resize", mem->resize, ','}, {"--crop", mem->crop, ','}};
    int n = 1;
    for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
        if (!L[k].list) continue;
        const int c = list_count(L[k].list, L[k].sep);
        if (n > 1 && c != n) {
            cli_error("%s: %d members, but another list names %d (give one value for all members, or one per member)",
                      L[k].opt, c, n);
            return false;
        }
        n = c;
    }
    if (n > max || n > (int)(sizeof mem->owned / sizeof mem->owned[0])) {
        cli_error("an ensemble has at most %d members, not %d", (int)max, n);
        return false;
    }
    char item[4096], opt[64];
    for (int i = 0; i < n; i++) {
        pc_fit_options *o = &out[i];
        *o = *base;
        /* one value for all members, or member i's */
#define ITEM(k) (list_item(L[k].list, L[k].sep, list_count(L[k].list, L[k].sep) == 1 ? 0 : i, item, sizeof item))
        snprintf(opt, sizeof opt, "--backbone (member %d)", i + 1);
        if (L[0].list && ITEM(0) && !parse_arch(opt, item, &o->arch)) return false;
        if (L[1].list && ITEM(1)) {
            if (!item[0]) {
                cli_error("--weights: member %d's file name is empty", i + 1);
                return false;
            }
            o->weights = mem->owned[i] = strdup(item);
            if (!o->weights) {
                cli_error("out of memory");
                return false;
            }
        }
        snprintf(opt, sizeof opt, "--layers (member %d)", i + 1);
        if (L[2].list && ITEM(2) && !parse_layers(opt, item, o->arch, o->layers, &o->n_layers)) return false;
        snprintf(opt, sizeof opt, "--resize (member %d)", i + 1);
        if (L[3].list && ITEM(3) && !cli_parse_int(opt, item, 1, 4096, &o->resize)) return false;
        snprintf(opt, sizeof opt, "--crop (member %d)", i + 1);
        if (L[4].list && ITEM(4) && !cli_parse_int(opt, item, 16, 4096, &o->crop)) return false;
#undef ITEM
    }
    *n_out = n;
    return true;
}

void cli_fit_options_help(FILE *out) {
    fprintf(out,
            "  --weights FILE      backbone weights: torchvision .pth (zip or legacy) or .safetensors\n"
            "                      (default: $PATCHCORE_WEIGHTS, then torchvision's download cache)\n"
            "  --backbone NAME     architecture (resnet18/34/50/101/152, wide_resnet50_2/101_2,\n"
            "                      resnext50_32x4d/101_32x8d, densenet121/161/169/201); inferred from the\n"
            "                      weights when not given\n"
            "  --layers L,L        backbone layers whose features are used, in order (default layer2,layer3;\n"
            "                      denseblock2,denseblock3 for a DenseNet; a bare 2,3 fits both)\n"
            "  --bn STATS          batch-norm statistics: reference (default: the reference code's warm-up,\n"
            "                      one training-mode pass of a ones image at the crop size) or trained\n"
            "                      (the weights' own running statistics); stored in the model\n"
            "  --precision P       backbone arithmetic: f32 (default) or bf16 (bfloat16 convolutions; needs a\n"
            "                      CPU with AVX512-BF16 or AMX, else an error); stored in the model\n"
            "  --resize R          shorter side after resizing (default 256)\n"
            "  --crop S            centre crop side, the map size (default 224)\n"
            "  --patch P           neighbourhood size, odd (default 3)\n"
            "  --pre-dim N         per-layer feature dimension (default 1024)\n"
            "  --dim N             patch feature dimension (default 1024)\n"
            "  --coreset R         memory-bank ratio in (0,1] (default 0.1)\n"
            "  --coreset-size N    exact memory-bank size instead of a ratio\n"
            "  --sampler NAME      approx (greedy coreset, default), random or none (keep every patch)\n"
            "  --k K               nearest neighbours averaged per patch score (default 1)\n"
            "  --seed S            seed of the coreset's projection and start points (default 0)\n"
            "  --reweight B        the paper's Eq. 7 image score with B neighbours (default 0 = off)\n"
            "  --batch N           images per backbone call (default 8)\n"
            "  --jobs N            batches in flight during feature extraction, the threads split among\n"
            "                      them (default 0: one per 2 threads, at least 1; docs/threads.md);\n"
            "                      the same model for every N when --batch >= --threads\n"
            "  --threads N         threads for the library and OpenBLAS (default: the CPUs this\n"
            "                      process may use, docs/threads.md)\n"
            "  --max-memory SIZE   keep the fit under SIZE (e.g. 2G, 1500M; K/M/G = 1024^1..3 bytes) by\n"
            "                      streaming the features to a temporary file in $TMPDIR (default /tmp);\n"
            "                      same model; fails at once if SIZE cannot be met (default 0 = unlimited)\n"
            "  --roi MASK          region of interest: a mask image in the images' coordinates (white or\n"
            "                      any non-zero grey = inspect, black = ignore; colour is converted to\n"
            "                      grey); patches outside it stay out of the memory bank, and the mask is\n"
            "                      stored in the model, which then scores inside it only (docs/roi.md;\n"
            "                      default: the whole image; not with an ensemble)\n");
}

/* ---- tiling (docs/tiles.md), shared by fit and predict ------------------------------------------ */

bool cli_parse_tiling_option(int argc, char **argv, int *i, pc_tiling *t, unsigned *given, bool *matched) {
    const char *a = argv[*i], *v;
    *matched = true;
    if (cli_match(a, "--tile")) {
        if (!cli_take_value(argc, argv, i, "--tile", &v) || !cli_parse_int("--tile", v, 16, 4096, &t->tile))
            return false;
        *given |= CLI_TILE_GIVEN;
    } else if (cli_match(a, "--tile-overlap")) {
        if (!cli_take_value(argc, argv, i, "--tile-overlap", &v) ||
            !cli_parse_double("--tile-overlap", v, 0, 0.9, &t->overlap))
            return false;
        *given |= CLI_TILE_OVERLAP_GIVEN;
    } else if (cli_match(a, "--tile-scale")) {
        if (!cli_take_value(argc, argv, i, "--tile-scale", &v) ||
            !cli_parse_double("--tile-scale", v, 0, 16, &t->scale))
            return false;
        if (!(t->scale > 0)) {
            cli_error("--tile-scale: must be in (0, 16]");
            return false;
        }
        *given |= CLI_TILE_SCALE_GIVEN;
    } else if (cli_match(a, "--stitch")) {
        if (!cli_take_value(argc, argv, i, "--stitch", &v)) return false;
        if (!strcmp(v, "mean")) t->stitch = PC_STITCH_MEAN;
        else if (!strcmp(v, "max")) t->stitch = PC_STITCH_MAX;
        else {
            cli_error("--stitch: '%s' is not mean or max", v);
            return false;
        }
        *given |= CLI_STITCH_GIVEN;
    } else {
        *matched = false;
    }
    return true;
}

void cli_tiling_options_help(FILE *out, bool fit) {
    if (fit)
        fprintf(out,
                "  --tile S            cut each image (at native resolution, or scaled by --tile-scale) into\n"
                "                      overlapping S x S tiles, each one backbone input; replaces --resize and\n"
                "                      --crop (16..4096; default 0 = off; docs/tiles.md)\n"
                "  --tile-overlap F    fraction of a tile shared with its neighbours, 0..0.9 (default 0.25)\n"
                "  --tile-scale F      resize factor applied before tiling, (0, 16] (default 1)\n"
                "  --stitch RULE       where tile maps overlap: mean (default) or max; stored in the model\n");
    else
        fprintf(out,
                "  --tile S               a tiled model's tile size, as a check (it cannot change; a model\n"
                "                         fitted without --tile cannot be predicted tiled; docs/tiles.md)\n"
                "  --tile-overlap F       override the tiled model's tile overlap, 0..0.9\n"
                "  --tile-scale F         override the tiled model's scale before tiling, (0, 16]\n"
                "  --stitch RULE          override the tiled model's stitch rule: mean or max\n");
}

/* ---- inputs ------------------------------------------------------------------------------------ */

static int push_path(cli_paths *out, const char *p) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? 2 * out->cap : 64;
        char **np = realloc(out->paths, cap * sizeof *np);
        if (!np) return -1;
        out->paths = np;
        out->cap = cap;
    }
    if (!(out->paths[out->n] = strdup(p))) return -1;
    out->n++;
    return 0;
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    static const char *exts[] = {".png", ".jpg", ".jpeg", ".bmp"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i]) == 0) return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int walk(cli_paths *out, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        cli_error("%s: cannot read directory: %s", dir, strerror(errno));
        return -1;
    }
    cli_paths entries = {0};
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) { rc = -1; break; }
        snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        rc = push_path(&entries, p);
        free(p);
        if (rc) break;
    }
    closedir(d);
    if (!rc) qsort(entries.paths, entries.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < entries.n && !rc; i++) {
        struct stat st;
        if (stat(entries.paths[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) rc = walk(out, entries.paths[i]);
        else if (S_ISREG(st.st_mode) && is_image_name(entries.paths[i])) rc = push_path(out, entries.paths[i]);
    }
    cli_paths_free(&entries);
    return rc;
}

bool cli_parse_only = false;

int cli_collect_images(cli_paths *out, const char *path) {
    if (cli_parse_only) return push_path(out, path);
    struct stat st;
    if (stat(path, &st) != 0) {
        cli_error("%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) return walk(out, path);
    return push_path(out, path);
}

void cli_paths_free(cli_paths *p) {
    for (size_t i = 0; i < p->n; i++) free(p->paths[i]);
    free(p->paths);
    memset(p, 0, sizeof *p);
}

/* ---- progress ---------------------------------------------------------------------------------- */

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, bool enabled) {
    memset(p, 0, sizeof *p);
    p->enabled = enabled && isatty(2);
    p->t0 = p->mark = cli_now();
}

int cli_progress_cb(void *user, const char *stage, int64_t done, int64_t total) {
    cli_progress *p = user;
    if (!p || !p->enabled) return 0;
    double now = cli_now();
    if (strcmp(p->stage, stage) != 0) {
        if (p->stage[0]) fputc('\n', stderr);
        snprintf(p->stage, sizeof p->stage, "%s", stage);
        p->t0 = p->mark; /* the stage began when the previous one last reported */
        p->last = 0;
    }
    p->mark = now;
    if (now - p->last < 0.1 && done != total) return 0;
    p->last = now;
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    if (total > 0 && rate > 0)
        fprintf(stderr, "\r%-10s %lld/%lld  %.1f/s  ETA %.0fs   ", stage, (long long)done, (long long)total, rate,
                (double)(total - done) / rate);
    else if (total > 0)
        fprintf(stderr, "\r%-10s %lld/%lld   ", stage, (long long)done, (long long)total);
    else
        fprintf(stderr, "\r%-10s %lld   ", stage, (long long)done);
    return 0;
}

void cli_progress_done(cli_progress *p) {
    if (p->enabled && p->stage[0]) fputc('\n', stderr);
    p->stage[0] = '\0';
}

/* ---- unique output names ----------------------------------------------------------------------- */

const char *cli_unique_name(cli_names *names, const char *path, const char *ext, char *buf, size_t size) {
    while (path[0] == '.' && path[1] == '/') path += 2;
    while (strncmp(path, "../", 3) == 0) path += 3;
    while (path[0] == '/') path++;
    char base[1024];
    snprintf(base, sizeof base, "%s", path);
    char *dot = strrchr(base, '.');
    if (dot && !strchr(dot, '/')) *dot = '\0';
    for (char *c = base; *c; c++)
        if (*c == '/') *c = '_';
    snprintf(buf, size, "%s%s", base, ext);
    for (int k = 2;; k++) {
        int clash = 0;
        for (size_t i = 0; i < names->n && !clash; i++) clash = strcmp(names->used[i], buf) == 0;
        if (!clash) break;
        snprintf(buf, size, "%s-%d%s", base, k, ext);
    }
    if (names->n == names->cap) {
        size_t cap = names->cap ? 2 * names->cap : 64;
        char **nu = realloc(names->used, cap * sizeof *nu);
        if (!nu) return buf;
        names->used = nu;
        names->cap = cap;
    }
    names->used[names->n] = strdup(buf);
    if (names->used[names->n]) names->n++;
    return buf;
}

void cli_names_free(cli_names *names) {
    for (size_t i = 0; i < names->n; i++) free(names->used[i]);
    free(names->used);
    memset(names, 0, sizeof *names);
}
