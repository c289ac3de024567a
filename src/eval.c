/*
 * eval.c - MVTec AD layout walker, metrics aggregation of an evaluation, and predict reporting
 * (anomalous regions mapped back to original image coordinates). Nothing here calls the model; the
 * predicting loop is in eval_run.c. METHOD.md §7, docs/evaluation.md.
 */
#include "internal.h"
#include "patchcore.h"
#include "maps.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- directory helpers ---- */

typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) pc_free(l->v[i]);
    pc_free(l->v);
    memset(l, 0, sizeof *l);
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pc_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *d = pc_malloc(la + lb + 2);
    if (!d) return NULL;
    memcpy(d, a, la);
    d[la] = '/';
    memcpy(d + la + 1, b, lb + 1);
    return d;
}

static pc_status strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = pc_malloc(cap * sizeof *v);
        if (!v) return pc_fail(PC_ERR_NO_MEMORY, "out of memory listing a directory");
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        pc_free(l->v);
        l->v = v;
        l->cap = cap;
    }
    char *d = dupstr(s);
    if (!d) return pc_fail(PC_ERR_NO_MEMORY, "out of memory listing a directory");
    l->v[l->n++] = d;
    return PC_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return false;
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".bmp"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        const char *e = exts[i];
        size_t k = 0;
        while (e[k] && dot[k] && tolower((unsigned char)dot[k]) == e[k]) k++;
        if (!e[k] && !dot[k]) return true;
    }
    return false;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Sorted names in dir: directories (want_dirs) or image files. */
static pc_status list_dir(strlist *out, const char *dir, bool want_dirs) {
    DIR *d = opendir(dir);
    if (!d) return pc_fail(errno == ENOENT ? PC_ERR_NOT_FOUND : PC_ERR_IO, "%s: cannot open directory: %s", dir,
                           strerror(errno));
    pc_status st = PC_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = join(dir, e->d_name);
        if (!full) {
            st = pc_fail(PC_ERR_NO_MEMORY, "out of memory listing %s", dir);
            break;
        }
        bool keep = want_dirs ? is_dir(full) : (is_image_name(e->d_name) && is_file(full));
        pc_free(full);
        if (keep && (st = strlist_push(out, e->d_name)) != PC_OK) break;
    }
    closedir(d);
    if (st == PC_OK && out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return st;
}

void pc_dataset_free(pc_dataset *ds) {
    if (!ds) return;
    pc_free(ds->root);
    for (size_t i = 0; i < ds->n_train; i++) pc_free(ds->train_paths[i]);
    pc_free(ds->train_paths);
    for (size_t i = 0; i < ds->n_test; i++) {
        pc_free(ds->test[i].path);
        pc_free(ds->test[i].mask_path);
    }
    pc_free(ds->test);
    for (int32_t i = 0; i < ds->n_types; i++) pc_free(ds->type_names[i]);
    pc_free(ds->type_names);
    pc_free(ds);
}

#define NOMEM() pc_fail(PC_ERR_NO_MEMORY, "out of memory walking %s", dir)

pc_status pc_dataset_open(const char *dir, int need_train, pc_dataset **out) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_dataset_open: out is NULL");
    *out = NULL;
    if (!dir) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_dataset_open: category_dir is NULL");
    if (!is_dir(dir)) return pc_fail(PC_ERR_NOT_FOUND, "%s: not a directory (expected an MVTec AD category)", dir);
    pc_status st = PC_OK;
    pc_dataset *ds = pc_calloc(1, sizeof *ds);
    char *train = NULL, *test = NULL, *gt = NULL;
    strlist names = {0}, types = {0};
    if (!ds || !(ds->root = dupstr(dir)) || !(train = join(dir, "train/good")) || !(test = join(dir, "test")) ||
        !(gt = join(dir, "ground_truth"))) {
        st = NOMEM();
        goto done;
    }
    ds->good_type = -1;
    if (is_dir(train)) {
        if ((st = list_dir(&names, train, false)) != PC_OK) goto done;
        if (names.n == 0 && need_train) {
            st = pc_fail(PC_ERR_NOT_FOUND, "%s: no images (.png/.jpg/.jpeg/.bmp) in train/good", train);
            goto done;
        }
        ds->train_paths = pc_calloc(names.n ? names.n : 1, sizeof *ds->train_paths);
        if (!ds->train_paths) { st = NOMEM(); goto done; }
        for (size_t i = 0; i < names.n; i++) {
            if (!(ds->train_paths[i] = join(train, names.v[i]))) { st = NOMEM(); goto done; }
            ds->n_train++;
        }
        strlist_free(&names);
    } else if (need_train) {
        st = pc_fail(PC_ERR_NOT_FOUND, "%s: missing (the MVTec AD layout has CATEGORY/train/good/*)", train);
        goto done;
    }
    if (!is_dir(test)) {
        st = pc_fail(PC_ERR_NOT_FOUND, "%s: missing (the MVTec AD layout has CATEGORY/test/<type>/*)", test);
        goto done;
    }
    if ((st = list_dir(&types, test, true)) != PC_OK) goto done;
    if (types.n == 0 || types.n > 100000) {
        st = pc_fail(PC_ERR_NOT_FOUND, "%s: no defect-type directories (expected test/good, test/<type>)", test);
        goto done;
    }
    ds->type_names = pc_calloc(types.n, sizeof *ds->type_names);
    if (!ds->type_names) { st = NOMEM(); goto done; }
    size_t cap = 0;
    for (size_t t = 0; t < types.n; t++) {
        ds->type_names[t] = types.v[t];
        types.v[t] = NULL;
        ds->n_types++;
        bool good = strcmp(ds->type_names[t], "good") == 0;
        if (good) ds->good_type = (int32_t)t;
        char *tdir = join(test, ds->type_names[t]);
        if (!tdir) { st = NOMEM(); goto done; }
        st = list_dir(&names, tdir, false);
        for (size_t i = 0; st == PC_OK && i < names.n; i++) {
            if (ds->n_test == cap) {
                size_t nc = cap ? cap * 2 : 64;
                pc_eval_item *v = pc_calloc(nc, sizeof *v);
                if (!v) { st = NOMEM(); break; }
                if (ds->n_test) memcpy(v, ds->test, ds->n_test * sizeof *v);
                pc_free(ds->test);
                ds->test = v;
                cap = nc;
            }
            pc_eval_item *it = &ds->test[ds->n_test];
            it->type = (int32_t)t;
            if (!(it->path = join(tdir, names.v[i]))) { st = NOMEM(); break; }
            ds->n_test++;
            if (good) continue;
            /* ground_truth/<type>/<stem>_mask.png */
            const char *name = names.v[i];
            const char *dot = strrchr(name, '.');
            size_t stem = (size_t)(dot - name), lt = strlen(ds->type_names[t]), lg = strlen(gt);
            size_t len = lg + 1 + lt + 1 + stem + sizeof "_mask.png";
            char *m = pc_malloc(len);
            if (!m) { st = NOMEM(); break; }
            memcpy(m, gt, lg);
            m[lg] = '/';
            memcpy(m + lg + 1, ds->type_names[t], lt);
            m[lg + 1 + lt] = '/';
            memcpy(m + lg + lt + 2, name, stem);
            memcpy(m + lg + lt + 2 + stem, "_mask.png", sizeof "_mask.png");
            it->mask_path = m;
            if (!is_file(m))
                st = pc_fail(PC_ERR_NOT_FOUND, "%s: missing ground-truth mask for defective test image %s", m,
                             it->path);
        }
        pc_free(tdir);
        strlist_free(&names);
        if (st != PC_OK) goto done;
    }
    if (ds->n_test == 0) st = pc_fail(PC_ERR_NOT_FOUND, "%s: no test images", test);
done:
    strlist_free(&names);
    strlist_free(&types);
    pc_free(train);
    pc_free(test);
    pc_free(gt);
    if (st != PC_OK) pc_dataset_free(ds);
    else *out = ds;
    return st;
}

/* ---- aggregation ---- */

void pc_eval_result_free(pc_eval_result *r) {
    if (!r) return;
    pc_free(r->per_type);
    r->per_type = NULL;
    r->n_types = 0;
}

pc_status pc_eval_aggregate(pc_eval_result *out, const float *scores, const float *maps, const uint8_t *masks,
                            const int32_t *types, const char *const *type_names, int32_t n_types,
                            int32_t good_type, int32_t n, int32_t h, int32_t w) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_aggregate: out is NULL");
    memset(out, 0, sizeof *out);
    if (n < 1 || h < 1 || w < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_aggregate: bad arguments (n=%d h=%d w=%d types=%d good=%d)",
                       (int)n, (int)h, (int)w, (int)n_types, (int)good_type);
    size_t npix;
    if (!pc_mul3_size((size_t)n, (size_t)h, (size_t)w, &npix) || npix > ((size_t)1 << 31))
        return pc_fail(PC_ERR_TOO_LARGE, "pc_eval_aggregate: %d maps of %dx%d exceed 2^31 pixels", (int)n, (int)h,
                       (int)w);
    int32_t *hs = pc_malloc((size_t)n * sizeof *hs), *ws = pc_malloc((size_t)n * sizeof *ws);
    if (!hs || !ws) {
        pc_free(hs), pc_free(ws);
        return pc_fail(PC_ERR_NO_MEMORY, "pc_eval_aggregate: out of memory");
    }
    for (int32_t i = 0; i < n; i++) hs[i] = h, ws[i] = w;
    pc_status st = pc_eval_aggregate_sizes(out, scores, maps, masks, types, type_names, n_types, good_type, n, hs, ws);
    pc_free(hs), pc_free(ws);
    return st;
}

/* Every map i is hs[i] x ws[i], one after the other; the pixel metrics pool all their pixels (the
 * binary metrics do not care where one map ends; AUPRO labels each mask at its own size). */
pc_status pc_eval_aggregate_sizes(pc_eval_result *out, const float *scores, const float *maps, const uint8_t *masks,
                                  const int32_t *types, const char *const *type_names, int32_t n_types,
                                  int32_t good_type, int32_t n, const int32_t *hs, const int32_t *ws) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_aggregate: out is NULL");
    memset(out, 0, sizeof *out);
    if (!scores || !maps || !masks || !types || !type_names || n < 1 || !hs || !ws || n_types < 1 ||
        good_type < 0 || good_type >= n_types)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_aggregate: bad arguments (n=%d types=%d good=%d)", (int)n,
                       (int)n_types, (int)good_type);
    size_t npix = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t px;
        if (hs[i] < 1 || ws[i] < 1)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_aggregate: map %d is %dx%d", (int)i, (int)ws[i],
                           (int)hs[i]);
        if (!pc_mul_size((size_t)hs[i], (size_t)ws[i], &px) || !pc_add_size(npix, px, &npix) ||
            npix > ((size_t)1 << 31))
            return pc_fail(PC_ERR_TOO_LARGE, "pc_eval_aggregate: %d maps exceed 2^31 pixels", (int)n);
    }
    uint8_t *lab = pc_malloc((size_t)n);
    float *sub = pc_malloc((size_t)n * sizeof *sub);
    uint8_t *sublab = pc_malloc((size_t)n);
    /* Masks already 0/1 (eval's own, pc_mask_for_map's) are used as they are: no copy of npix bytes. */
    bool is01 = true;
    for (size_t p = 0; p < npix && is01; p++) is01 = masks[p] <= 1;
    uint8_t *own01 = is01 ? NULL : pc_malloc(npix);
    const uint8_t *mask01 = is01 ? masks : own01;
    out->per_type = pc_calloc((size_t)n_types, sizeof *out->per_type);
    pc_status st = PC_OK;
    if (!lab || !sub || !sublab || (!is01 && !own01) || !out->per_type) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_eval_aggregate: out of memory");
        goto done;
    }
    out->n_types = n_types;
    for (int32_t i = 0; i < n; i++) {
        if (types[i] < 0 || types[i] >= n_types) {
            st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_eval_aggregate: image %d has type %d outside 0..%d", (int)i,
                         (int)types[i], (int)n_types - 1);
            goto done;
        }
        lab[i] = types[i] != good_type;
        if (lab[i]) out->n_defective++;
        else out->n_good++;
    }
    if (out->n_good == 0 || out->n_defective == 0) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "evaluation needs good and defective test images (%lld good, %lld defective)",
                     (long long)out->n_good, (long long)out->n_defective);
        goto done;
    }
    if (!is01)
        for (size_t p = 0; p < npix; p++) own01[p] = masks[p] != 0;
    pc_binary_metrics bm;
    if ((st = pc_metric_binary(&bm, scores, lab, (size_t)n)) != PC_OK) goto done;
    out->image_auroc = bm.auroc;
    out->image_f1_max = bm.f1_max;
    out->image_f1_threshold = bm.f1_decision_threshold;
    if ((st = pc_metric_binary(&bm, maps, mask01, npix)) != PC_OK) goto done;
    if (bm.n_positive == 0 || bm.n_negative == 0) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "evaluation needs anomalous and nominal mask pixels (%lld, %lld)",
                     (long long)bm.n_positive, (long long)bm.n_negative);
        goto done;
    }
    out->pixel_auroc = bm.auroc;
    out->pixel_f1_max = bm.f1_max;
    out->pixel_f1_threshold = bm.f1_decision_threshold;
    if ((st = pc_metric_aupro_sizes(&out->aupro, maps, mask01, n, hs, ws, PC_AUPRO_FPR_LIMIT)) != PC_OK) goto done;
    for (int32_t t = 0; t < n_types; t++) {
        pc_eval_type_result *r = &out->per_type[t];
        r->name = type_names[t];
        r->image_auroc = NAN;
        size_t m = 0;
        for (int32_t i = 0; i < n; i++) {
            if (types[i] == t) r->n++;
            if (types[i] == t || types[i] == good_type) {
                sub[m] = scores[i];
                sublab[m++] = types[i] == t;
            }
        }
        if (t != good_type && r->n > 0 && (st = pc_metric_auroc(&r->image_auroc, sub, sublab, m)) != PC_OK) goto done;
    }
done:
    pc_free(lab);
    pc_free(sub);
    pc_free(sublab);
    pc_free(own01);
    if (st != PC_OK) pc_eval_result_free(out);
    return st;
}

/* ---- predict reporting ---- */

pc_status pc_geometry_box_to_original(const pc_geometry *g, int32_t x0, int32_t y0, int32_t x1, int32_t y1,
                                      int32_t *ox0, int32_t *oy0, int32_t *ox1, int32_t *oy1) {
    if (!g || !ox0 || !oy0 || !ox1 || !oy1 || g->resized_width < 1 || g->resized_height < 1 ||
        g->orig_width < 1 || g->orig_height < 1 || x0 > x1 || y0 > y1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_geometry_box_to_original: bad arguments");
    double sx = (double)g->orig_width / g->resized_width, sy = (double)g->orig_height / g->resized_height;
    double a = floor((x0 + g->crop_left) * sx + 1e-9), b = ceil((x1 + g->crop_left) * sx - 1e-9);
    double c = floor((y0 + g->crop_top) * sy + 1e-9), d = ceil((y1 + g->crop_top) * sy - 1e-9);
    *ox0 = (int32_t)fmin(fmax(a, 0), g->orig_width);
    *ox1 = (int32_t)fmin(fmax(b, 0), g->orig_width);
    *oy0 = (int32_t)fmin(fmax(c, 0), g->orig_height);
    *oy1 = (int32_t)fmin(fmax(d, 0), g->orig_height);
    return PC_OK;
}

static int cmp_region_peak(const void *a, const void *b) {
    const pc_region *x = a, *y = b;
    if (x->peak != y->peak) return x->peak > y->peak ? -1 : 1;
    return x->label - y->label;
}

pc_status pc_regions_from_map(pc_region *regions, int32_t max, int32_t *n_total, const float *map, int32_t size,
                              double threshold, const pc_geometry *g) {
    pc_clear_error();
    if (!n_total || !map || size < 0 || (size == 0 && !g) || max < 0 || (max > 0 && !regions) || isnan(threshold))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_regions_from_map: bad arguments");
    *n_total = 0;
    /* The map is size x size, or with size 0 the geometry's map (its width x height). */
    int32_t mw = size, mh = size;
    if (size == 0) pc_geometry_map_dims(g, &mw, &mh);
    if (mw < 1 || mh < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_regions_from_map: the geometry's map is %dx%d", (int)mw, (int)mh);
    size_t npix;
    if (!pc_mul_size((size_t)mw, (size_t)mh, &npix) || npix >= ((size_t)1 << 31))
        return pc_fail(PC_ERR_TOO_LARGE, "pc_regions_from_map: map of %d x %d too large", (int)mw, (int)mh);
    uint8_t *mask = pc_malloc(npix);
    int32_t *labels = pc_malloc(npix * sizeof *labels);
    pc_region *all = NULL;
    pc_status st = PC_OK;
    if (!mask || !labels) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_regions_from_map: out of memory");
        goto done;
    }
    for (size_t p = 0; p < npix; p++) mask[p] = (double)map[p] > threshold;
    int32_t nc = 0;
    if ((st = pc_label_components(labels, &nc, mask, mh, mw)) != PC_OK) goto done;
    *n_total = nc;
    if (nc == 0 || max == 0) goto done;
    all = pc_malloc((size_t)nc * sizeof *all);
    if (!all) {
        st = pc_fail(PC_ERR_NO_MEMORY, "pc_regions_from_map: out of memory");
        goto done;
    }
    if ((st = pc_regions_describe(all, labels, nc, map, mh, mw)) != PC_OK) goto done;
    qsort(all, (size_t)nc, sizeof *all, cmp_region_peak);
    int32_t m = nc < max ? nc : max;
    for (int32_t i = 0; i < m; i++) {
        regions[i] = all[i];
        if (g) {
            pc_region *r = &regions[i];
            if ((st = pc_geometry_box_to_original(g, r->x0, r->y0, r->x1, r->y1, &r->x0, &r->y0, &r->x1, &r->y1)) !=
                PC_OK)
                goto done;
        }
    }
done:
    pc_free(mask);
    pc_free(labels);
    pc_free(all);
    return st;
}
