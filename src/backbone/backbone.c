/*
 * backbone.c - the public pc_backbone_* API over the backbone families (family.h: resnet.c,
 * densenet.c): architecture names, options, the choice of convolution path, the default weights
 * lookup, reading a weights file through one load filter, inference of the family and architecture,
 * validation (missing, mismatched and unexpected tensors reported by name), views, the builtin
 * path's workspace, the oneDNN plans, and dispatch of the forward pass.
 */
#include "family.h"
#include "onednn.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const pc_bb_family *const FAMILIES[] = {&pc_family_resnet, &pc_family_densenet};
#define N_FAMILIES ((int)(sizeof FAMILIES / sizeof FAMILIES[0]))

static const pc_bb_arch *spec_of(pc_arch a) {
    for (int f = 0; f < N_FAMILIES; f++)
        for (int i = 0; i < FAMILIES[f]->narchs; i++)
            if (FAMILIES[f]->arch(i)->arch == a) return FAMILIES[f]->arch(i);
    return NULL;
}

const char *pc_arch_name(pc_arch arch) {
    const pc_bb_arch *s = spec_of(arch);
    return s ? s->name : "unknown";
}

pc_arch pc_arch_from_name(const char *name) {
    if (!name) return PC_ARCH_UNKNOWN;
    for (int f = 0; f < N_FAMILIES; f++)
        for (int i = 0; i < FAMILIES[f]->narchs; i++)
            if (strcmp(FAMILIES[f]->arch(i)->name, name) == 0) return FAMILIES[f]->arch(i)->arch;
    return PC_ARCH_UNKNOWN;
}

int32_t pc_arch_channels(pc_arch arch, int32_t n) {
    const pc_bb_arch *s = spec_of(arch);
    return s && n >= 1 && n <= 4 ? s->family->channels(s, n) : 0;
}

float *pc_bb_ws(const pc_backbone *bb, int i) {
    float *p = bb->ws;
    for (int j = 0; j < i; j++) p += bb->ws_cap[j];
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Lifetime, views
 * ------------------------------------------------------------------------------------------- */

static void release_plans(pc_backbone *bb) {
    for (int i = 0; i < 2; i++) {
        pc_dnn_plan_free(bb->plans[i]);
        bb->plans[i] = NULL;
    }
}

/* Free the weights and workspace a backbone holds, not the struct itself. */
static void backbone_release(pc_backbone *bb) {
    release_plans(bb);
    pc_dnn_net_free(bb->dnet);
    bb->dnet = NULL;
    if (bb->spec && bb->net) bb->spec->family->release(bb);
    pc_free(bb->ws);
    bb->ws = NULL;
}

void pc_backbone_free(pc_backbone *bb) {
    if (!bb) return;
    if (bb->is_view) {
        pc_free(bb->ws);
        release_plans(bb);
    } else {
        backbone_release(bb);
    }
    pc_free(bb);
}

pc_status pc_backbone_view(const pc_backbone *src, pc_backbone **out) {
    *out = NULL;
    pc_backbone *v = pc_malloc(sizeof *v);
    if (!v) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    memcpy(v, src, sizeof *v);
    v->ws = NULL;
    memset(v->ws_cap, 0, sizeof v->ws_cap);
    v->plans[0] = v->plans[1] = NULL;
    v->is_view = 1;
    v->errmsg[0] = '\0';
    *out = v;
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Reading a file: one filter for every family
 * ------------------------------------------------------------------------------------------- */

/* Every family sees every name (and records its evidence); a tensor is skipped when one of them
 * says its load does not need it, and loaded otherwise (names no family knows are loaded, to be
 * reported as unexpected). */
static int load_filter(const char *name, void *user) {
    pc_bb_evidence *E = user;
    E->names++;
    int keep = 1;
    for (int f = 0; f < N_FAMILIES; f++)
        if (FAMILIES[f]->filter(name, E) == 0) keep = 0;
    if (E->load_all) return 1;
    size_t n = strlen(name), suf = strlen(".num_batches_tracked");
    if (n >= suf && strcmp(name + n - suf, ".num_batches_tracked") == 0) return 0;
    return keep;
}

int pc_backbone_tensor_needed(const char *name, int32_t deepest) {
    pc_bb_evidence E = {.max_layer = deepest};
    const size_t n = strlen(name), suf = strlen(".num_batches_tracked");
    if (n >= suf && strcmp(name + n - suf, ".num_batches_tracked") == 0) return 0;
    int mine = 0;
    for (int f = 0; f < N_FAMILIES; f++) {
        const int r = FAMILIES[f]->filter(name, &E);
        if (r == 0) return 0;
        mine |= r == 1;
    }
    return mine;
}

/* The architecture of d: the family that recognises its names infers it. */
static pc_status infer_arch(const pc_tensor_dict *d, const pc_bb_evidence *E, const char *path,
                            const pc_bb_arch **out) {
    *out = NULL;
    for (int f = 0; f < N_FAMILIES; f++)
        if (FAMILIES[f]->recognise(d)) return FAMILIES[f]->infer(d, E, path, out);
    return pc_fail(PC_ERR_NOT_FOUND,
                   "%s: cannot infer the architecture: this is not a torchvision ResNet state dict "
                   "(conv1.weight, layer1.0.conv1.weight or layer1.0.conv2.weight is missing) nor a DenseNet one "
                   "(features.conv0.weight is missing)", path);
}

static pc_status report(const pc_bb_problems *P, const char *path, const pc_bb_arch *a, int max_layer) {
    if (!P->missing && !P->mismatched && !P->unexpected) return PC_OK;
    pc_status st = P->mismatched || P->unexpected ? PC_ERR_SHAPE : PC_ERR_NOT_FOUND;
    return pc_fail(st, "%s: does not match %s up to %s (%d missing, %d mismatched, %d unexpected): %s%s", path,
                   a->name, pc_layer_name(a->arch, max_layer), P->missing, P->mismatched, P->unexpected, P->text,
                   P->dropped ? "; ..." : "");
}

/* ---------------------------------------------------------------------------------------------
 * Where the weights are when no path is given
 * ------------------------------------------------------------------------------------------- */

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The first snapshot of Hugging Face hub cache folder `repo` holding model.safetensors:
 * $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
static int find_hf(const char *repo, char *out, size_t size, char *where, size_t wsize) {
    const char *hc = getenv("HF_HUB_CACHE"), *hh = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    char dir[2048];
    if (hc && *hc) snprintf(dir, sizeof dir, "%s/%s/snapshots", hc, repo);
    else if (hh && *hh) snprintf(dir, sizeof dir, "%s/hub/%s/snapshots", hh, repo);
    else if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/huggingface/hub/%s/snapshots", xdg, repo);
    else snprintf(dir, sizeof dir, "%s/.cache/huggingface/hub/%s/snapshots", home ? home : "", repo);
    snprintf(where, wsize, "%s/*/model.safetensors", dir);
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(dp)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        snprintf(out, size, "%s/%s/model.safetensors", dir, e->d_name);
        found = file_exists(out);
    }
    closedir(dp);
    return found;
}

static pc_status find_default(const pc_bb_arch *a, char *out, size_t size) {
    const char *env = getenv("PATCHCORE_WEIGHTS");
    if (env && *env) {
        if (!file_exists(env))
            return pc_fail(PC_ERR_NOT_FOUND, "$PATCHCORE_WEIGHTS names %s, which does not exist", env);
        snprintf(out, size, "%s", env);
        return PC_OK;
    }
    char dir[2048];
    const char *th = getenv("TORCH_HOME"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (th && *th)
        snprintf(dir, sizeof dir, "%s/hub/checkpoints", th);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/torch/hub/checkpoints", xdg);
    else
        snprintf(dir, sizeof dir, "%s/.cache/torch/hub/checkpoints", home ? home : "");
    char tried[1024] = "";
    size_t at = 0;
    for (int i = 0; i < 3 && a->files[i]; i++) {
        snprintf(out, size, "%s/%s", dir, a->files[i]);
        if (file_exists(out)) return PC_OK;
        at += (size_t)snprintf(tried + at, sizeof tried - at, "%s%s", i ? ", " : "", a->files[i]);
        if (at >= sizeof tried) at = sizeof tried - 1;
    }
    char hf[2304] = "";
    if (a->hf_repo) {
        char where[2304];
        if (find_hf(a->hf_repo, out, size, where, sizeof where)) return PC_OK;
        snprintf(hf, sizeof hf, ", nor is there %s", where);
    }
    out[0] = '\0';
    return pc_fail(PC_ERR_NOT_FOUND,
                   "no weights file given and none found for %s: $PATCHCORE_WEIGHTS is not set and %s holds none of "
                   "%s%s. Name a file with --weights (or $PATCHCORE_WEIGHTS), or download torchvision's: "
                   "curl -L --create-dirs -o %s/%s https://download.pytorch.org/models/%s",
                   a->name, dir, tried, hf, dir, a->files[0], a->files[0]);
}

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */

static int max_layer_of(uint32_t mask) {
    int m = 0;
    for (int l = 1; l <= 4; l++)
        if (mask & PC_LAYER(l)) m = l;
    return m;
}

const char *pc_bn_stats_name(pc_bn_stats s) {
    switch (s) {
    case PC_BN_REFERENCE: return "reference";
    case PC_BN_TRAINED: return "trained";
    }
    return "unknown";
}

int pc_bn_stats_from_name(const char *name) {
    if (name && strcmp(name, "reference") == 0) return PC_BN_REFERENCE;
    if (name && strcmp(name, "trained") == 0) return PC_BN_TRAINED;
    return -1;
}

void pc_backbone_options_init(pc_backbone_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->bn_stats = PC_BN_REFERENCE;
    opt->warmup_size = 224;
}

/* Our kernels or oneDNN's, by measurement (docs/backbone.md, "Which convolutions"; the switch
 * $PATCHCORE_CONV=builtin|onednn overrides it; bf16 has only the oneDNN path). Where oneDNN runs
 * AVX-512 its brgemm kernels beat ours on every architecture measured (ResNet-18, WRN-50-2: 0.6x
 * our time; DenseNet-201 less than half); capped at AVX2 (the Zen 3 machines) its jit:avx2 kernels
 * lose to our Winograd + OpenBLAS Haswell by 5-10% on ResNets, so the builtin path stays their
 * default there, while on DenseNets (many small 1x1 and 3x3 -> 32 convolutions, one image at a time)
 * oneDNN still wins by far (onednn_below_avx512). A family without a oneDNN description runs builtin. */
static pc_conv_path default_conv_path(const pc_backbone *bb) {
    const pc_bb_family *f = bb->spec->family;
    if (!f->has_onednn || !pc_dnnl_engine()) return PC_CONV_BUILTIN;
    const unsigned avx512 = (unsigned)dnnl_cpu_isa_avx512_core;
    return f->onednn_below_avx512 || ((unsigned)pc_dnnl_isa() & avx512) == avx512 ? PC_CONV_ONEDNN : PC_CONV_BUILTIN;
}

static pc_status choose_conv_path(pc_backbone *bb, const char *fn) {
    const char *env = getenv("PATCHCORE_CONV");
    if (env && *env && strcmp(env, "builtin") != 0 && strcmp(env, "onednn") != 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: $PATCHCORE_CONV is '%s'; it may be 'builtin' or 'onednn'", fn,
                       env);
    if (bb->precision == PC_PRECISION_BF16) {
        if (env && !strcmp(env, "builtin"))
            return pc_fail(PC_ERR_UNSUPPORTED, "%s: precision bf16 runs on oneDNN only, and $PATCHCORE_CONV=builtin",
                           fn);
        bb->conv_path = PC_CONV_ONEDNN;
    } else if (env && *env) {
        bb->conv_path = strcmp(env, "onednn") ? PC_CONV_BUILTIN : PC_CONV_ONEDNN;
    } else {
        bb->conv_path = -1; /* decided once the architecture is known (build_from_dict) */
    }
    if (bb->conv_path == PC_CONV_ONEDNN && !pc_dnnl_engine())
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: oneDNN could not create a CPU engine", fn);
    return PC_OK;
}

/* Options checked and copied into bb (NULL: the defaults). */
static pc_status apply_options(pc_backbone *bb, const pc_backbone_options *opt, const char *fn) {
    pc_backbone_options d;
    pc_backbone_options_init(&d);
    if (!opt) opt = &d;
    if (opt->bn_stats != PC_BN_REFERENCE && opt->bn_stats != PC_BN_TRAINED)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: unknown batch-norm statistics %d", fn, (int)opt->bn_stats);
    if (opt->bn_stats == PC_BN_REFERENCE && (opt->warmup_size < 1 || opt->warmup_size > 65536))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: warm-up size %d is not in 1..65536", fn, (int)opt->warmup_size);
    if (opt->precision != PC_PRECISION_F32 && opt->precision != PC_PRECISION_BF16)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: unknown precision %d", fn, (int)opt->precision);
    char why[256];
    if (!pc_precision_supported(opt->precision, why, sizeof why))
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: precision %s is not available on this CPU: %s", fn,
                       pc_precision_name(opt->precision), why);
    bb->bn_stats = opt->bn_stats;
    bb->warmup_size = opt->warmup_size;
    bb->precision = opt->precision;
    return choose_conv_path(bb, fn);
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------------------- */

/* Infer (when a is NULL), build and validate bb from the tensors of d; E is what the load filter saw. */
static pc_status build_from_dict(pc_backbone *bb, const pc_tensor_dict *d, const pc_bb_evidence *E,
                                 const pc_bb_arch *a) {
    pc_status st;
    if (!a && (st = infer_arch(d, E, bb->path, &a)) != PC_OK) return st;
    bb->spec = a;
    if ((int)bb->conv_path < 0) bb->conv_path = default_conv_path(bb);
    if (bb->conv_path == PC_CONV_ONEDNN && !a->family->has_onednn)
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: %s runs on the builtin convolutions only (%s)", bb->path, a->name,
                       bb->precision == PC_PRECISION_BF16 ? "precision bf16 needs oneDNN" : "$PATCHCORE_CONV=onednn");
    pc_bb_problems P = {0};
    pc_bb_loadctx L = {.dict = d, .used = pc_calloc(d->count ? d->count : 1, 1), .prob = &P};
    if (!L.used) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    st = a->family->build(bb, &L, E);
    if (st == PC_OK) {
        for (size_t i = 0; i < d->count; i++)
            if (!L.used[i]) {
                P.unexpected++;
                pc_bb_problem(&P, "unexpected %s", d->tensors[i].name);
            }
        st = report(&P, bb->path, a, bb->max_layer);
    }
    if (st == PC_OK) st = a->family->finalise(bb);
    pc_free(L.used);
    return st;
}

pc_status pc_backbone_load(const char *path, pc_arch arch, uint32_t layer_mask, pc_backbone **out) {
    return pc_backbone_load_with(path, arch, layer_mask, NULL, out);
}

pc_status pc_backbone_load_with(const char *path, pc_arch arch, uint32_t layer_mask, const pc_backbone_options *opt,
                                pc_backbone **out) {
    pc_threads_apply();
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load: out is NULL");
    *out = NULL;
    if (layer_mask == 0 || (layer_mask & ~0xFu))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load: layer mask 0x%x must name some of layer1..layer4",
                       (unsigned)layer_mask);
    const pc_bb_arch *a = NULL;
    if (arch != PC_ARCH_UNKNOWN && !(a = spec_of(arch)))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load: unknown architecture %d", (int)arch);
    pc_backbone *bb = pc_calloc(1, sizeof *bb);
    if (!bb) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    bb->max_layer = max_layer_of(layer_mask);
    pc_status st = apply_options(bb, opt, "pc_backbone_load");
    if (st) {
        pc_free(bb);
        return st;
    }
    if (path) {
        snprintf(bb->path, sizeof bb->path, "%s", path);
    } else if ((st = find_default(a ? a : spec_of(PC_ARCH_WIDE_RESNET50_2), bb->path, sizeof bb->path)) != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    pc_bb_evidence E = {.max_layer = bb->max_layer};
    pc_tensor_dict *d = NULL;
    st = pc_weights_load(bb->path, load_filter, &E, &d);
    if (st != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    st = build_from_dict(bb, d, &E, a);
    pc_tensor_dict_free(d);
    if (st != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    *out = bb;
    return PC_OK;
}

pc_status pc_backbone_load_dict(const pc_tensor_dict *dict, const char *name, pc_arch arch, uint32_t layer_mask,
                                const pc_backbone_options *opt, pc_backbone **out) {
    pc_clear_error();
    if (!out || !dict) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load_dict: NULL argument");
    *out = NULL;
    if (layer_mask == 0 || (layer_mask & ~0xFu))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load_dict: bad layer mask 0x%x", (unsigned)layer_mask);
    const pc_bb_arch *a = NULL;
    if (arch != PC_ARCH_UNKNOWN && !(a = spec_of(arch)))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load_dict: unknown architecture %d", (int)arch);
    pc_backbone *bb = pc_calloc(1, sizeof *bb);
    pc_tensor_dict sub = {0};
    sub.tensors = pc_calloc(dict->count ? dict->count : 1, sizeof(pc_tensor));
    if (!bb || !sub.tensors) {
        pc_free(bb), pc_free(sub.tensors);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    bb->max_layer = max_layer_of(layer_mask);
    snprintf(bb->path, sizeof bb->path, "%s", name ? name : "<tensors>");
    pc_status st = apply_options(bb, opt, "pc_backbone_load_dict");
    if (st) {
        pc_free(bb), pc_free(sub.tensors);
        return st;
    }
    /* what the file path would have seen: every name goes through the filter, kept ones are used */
    pc_bb_evidence E = {.max_layer = bb->max_layer};
    for (size_t i = 0; i < dict->count; i++)
        if (load_filter(dict->tensors[i].name, &E)) sub.tensors[sub.count++] = dict->tensors[i];
    st = build_from_dict(bb, &sub, &E, a);
    pc_free(sub.tensors);
    if (st != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    *out = bb;
    return PC_OK;
}

pc_status pc_weights_inspect(const char *path, pc_weights_info *out) {
    pc_clear_error();
    if (!out || !path) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_weights_inspect: NULL argument");
    memset(out, 0, sizeof *out);
    pc_bb_evidence E = {.max_layer = 4, .load_all = 1};
    pc_tensor_dict *d = NULL;
    pc_status st = pc_weights_load(path, load_filter, &E, &d);
    if (st != PC_OK) return st;
    out->tensor_count = (int64_t)d->count;
    for (size_t i = 0; i < d->count; i++)
        if (d->tensors[i].data) out->param_count += d->tensors[i].numel;
    snprintf(out->format, sizeof out->format, "%s", d->format);
    const pc_bb_arch *a = NULL;
    if (infer_arch(d, &E, path, &a) != PC_OK) { /* not an error here; pc_last_error says why */
        pc_tensor_dict_free(d);
        return PC_OK;
    }
    out->arch = a->arch;
    /* A layer is available when it and everything before it builds without a problem. */
    for (int l = 1; l <= 4; l++) {
        pc_backbone tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.spec = a;
        tmp.max_layer = l;
        pc_bb_evidence El = E;
        El.max_layer = l;
        pc_bb_problems P = {0};
        pc_bb_loadctx L = {.dict = d, .used = pc_calloc(d->count ? d->count : 1, 1), .prob = &P};
        if (!L.used) {
            pc_tensor_dict_free(d);
            return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        }
        st = a->family->build(&tmp, &L, &El);
        pc_free(L.used);
        backbone_release(&tmp);
        if (st != PC_OK) {
            pc_tensor_dict_free(d);
            return st;
        }
        if (P.missing || P.mismatched || P.unexpected) break;
        out->layer_mask |= PC_LAYER(l);
    }
    pc_tensor_dict_free(d);
    pc_clear_error();
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------------------------- */

pc_arch pc_backbone_arch(const pc_backbone *bb) { return bb ? bb->spec->arch : PC_ARCH_UNKNOWN; }
pc_bn_stats pc_backbone_bn_stats(const pc_backbone *bb) { return bb ? bb->bn_stats : PC_BN_TRAINED; }
pc_precision pc_backbone_precision(const pc_backbone *bb) { return bb ? bb->precision : PC_PRECISION_F32; }
pc_conv_path pc_backbone_conv_path(const pc_backbone *bb) { return bb ? bb->conv_path : PC_CONV_BUILTIN; }
const char *pc_conv_path_name(pc_conv_path p) { return p == PC_CONV_ONEDNN ? "onednn" : "builtin"; }
int32_t pc_backbone_max_layer(const pc_backbone *bb) { return bb ? bb->max_layer : 0; }
const char *pc_backbone_errmsg(const pc_backbone *bb) { return bb ? bb->errmsg : ""; }
const char *pc_backbone_path(const pc_backbone *bb) { return bb ? bb->path : ""; }

int32_t pc_backbone_channels(const pc_backbone *bb, int32_t layer) {
    if (!bb || layer < 1 || layer > bb->max_layer) return 0;
    return bb->spec->family->channels(bb->spec, layer);
}

pc_status pc_backbone_out_size(const pc_backbone *bb, int32_t layer, int32_t in_h, int32_t in_w, int32_t *out_h,
                               int32_t *out_w) {
    if (!bb || !out_h || !out_w || layer < 1 || layer > bb->max_layer)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_out_size: bad argument (layer %d of 1..%d)", (int)layer,
                       bb ? (int)bb->max_layer : 0);
    int32_t h = in_h, w = in_w;
    if (!bb->spec->family->out_size(bb->spec, layer, &h, &w))
        return pc_fail(PC_ERR_SHAPE, "input %dx%d is too small for %s", (int)in_h, (int)in_w,
                       pc_layer_name(bb->spec->arch, layer));
    *out_h = h, *out_w = w;
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Workspace, plans, forward
 * ------------------------------------------------------------------------------------------- */

/* The oneDNN plan for (n, h, w) at the calling thread's thread count: the cached one, or a new one
 * (which replaces the older of the two cached). */
static pc_status get_plan(pc_backbone *bb, int32_t n, int32_t h, int32_t w, pc_dnn_plan **out) {
    if (!pc_dnn_plan_fits(bb->plans[0], n, h, w) && pc_dnn_plan_fits(bb->plans[1], n, h, w)) {
        pc_dnn_plan *t = bb->plans[0];
        bb->plans[0] = bb->plans[1], bb->plans[1] = t;
    }
    if (!pc_dnn_plan_fits(bb->plans[0], n, h, w)) {
        pc_dnn_plan *p = NULL;
        pc_status st = pc_dnn_plan_create(bb->dnet, n, h, w, &p);
        if (st != PC_OK) return st;
        pc_dnn_plan_free(bb->plans[1]);
        bb->plans[1] = bb->plans[0], bb->plans[0] = p;
    }
    *out = bb->plans[0];
    return PC_OK;
}

pc_status pc_backbone_reserve(pc_backbone *bb, int32_t n, int32_t h, int32_t w) {
    pc_threads_apply();
    pc_clear_error();
    if (!bb || n < 1 || h < 1 || w < 1 || n > 65536 || h > 65536 || w > 65536)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_reserve: bad size %d x %d x %d", (int)n, (int)h, (int)w);
    size_t need[PC_BB_WS_PARTS] = {0};
    if (!bb->spec->family->plan(bb, n, h, w, need))
        return pc_fail(PC_ERR_SHAPE, "input %dx%d is too small for %s up to %s", (int)h, (int)w, bb->spec->name,
                       pc_layer_name(bb->spec->arch, bb->max_layer));
    if (bb->conv_path == PC_CONV_ONEDNN) {
        pc_dnn_plan *p;
        return get_plan(bb, n, h, w, &p);
    }
    int grow = !bb->ws;
    size_t cap[PC_BB_WS_PARTS], total = 0;
    for (int i = 0; i < PC_BB_WS_PARTS; i++) {
        cap[i] = PC_MAX(need[i], bb->ws_cap[i]);
        grow |= need[i] > bb->ws_cap[i];
        if (!pc_add_size(total, cap[i], &total))
            return pc_fail(PC_ERR_TOO_LARGE, "workspace for %d x %d x %d overflows", (int)n, (int)h, (int)w);
    }
    if (!grow) return PC_OK;
    if (!pc_mul_size(total, sizeof(float), &total))
        return pc_fail(PC_ERR_TOO_LARGE, "workspace for %d x %d x %d overflows", (int)n, (int)h, (int)w);
    float *ws = pc_malloc(total ? total : sizeof(float));
    if (!ws)
        return pc_fail(PC_ERR_NO_MEMORY, "cannot allocate a %.1f MB workspace for %d images of %dx%d",
                       (double)total / 1e6, (int)n, (int)h, (int)w);
    pc_free(bb->ws);
    bb->ws = ws;
    memcpy(bb->ws_cap, cap, sizeof cap);
    return PC_OK;
}

size_t pc_backbone_weight_bytes(const pc_backbone *bb) {
    if (!bb || bb->is_view) return 0;
    return bb->spec->family->weight_bytes(bb) + pc_dnn_net_weight_bytes(bb->dnet);
}

size_t pc_backbone_workspace_bytes(const pc_backbone *bb) {
    if (!bb) return 0;
    size_t floats = 0;
    for (int i = 0; bb->ws && i < PC_BB_WS_PARTS; i++) floats += bb->ws_cap[i];
    return floats * sizeof(float) + pc_dnn_plan_bytes(bb->plans[0]) + pc_dnn_plan_bytes(bb->plans[1]);
}

void pc_backbone_release_workspace(pc_backbone *bb) {
    if (!bb) return;
    release_plans(bb);
    pc_free(bb->ws);
    bb->ws = NULL;
    memset(bb->ws_cap, 0, sizeof bb->ws_cap);
}

pc_status pc_backbone_describe_kernels(pc_backbone *bb, int32_t n, int32_t h, int32_t w, char *buf, size_t size) {
    if (size) buf[0] = '\0';
    if (!bb || bb->conv_path != PC_CONV_ONEDNN) return PC_OK;
    pc_status st = pc_backbone_reserve(bb, n, h, w);
    if (st == PC_OK) pc_dnn_plan_describe(bb->plans[0], buf, size);
    return st;
}

pc_status pc_backbone_forward(pc_backbone *bb, const float *in, int32_t n, int32_t h, int32_t w, uint32_t layer_mask,
                              float *const outs[4]) {
    pc_threads_apply();
    pc_clear_error();
    pc_status st = PC_OK;
    if (!bb) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: backbone is NULL");
    bb->errmsg[0] = '\0';
    const pc_arch arch = bb->spec->arch;
    if (!in || !outs || layer_mask == 0 || (layer_mask & ~0xFu)) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: NULL input/outputs or bad layer mask 0x%x",
                     (unsigned)layer_mask);
    } else if (max_layer_of(layer_mask) > bb->max_layer) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: %s requested but the backbone was loaded "
                     "up to %s", pc_layer_name(arch, max_layer_of(layer_mask)), pc_layer_name(arch, bb->max_layer));
    } else {
        for (int l = 1; l <= 4 && !st; l++)
            if ((layer_mask & PC_LAYER(l)) && !outs[l - 1])
                st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: outs[%d] (%s) is NULL", l - 1,
                             pc_layer_name(arch, l));
        if (!st && bb->conv_path == PC_CONV_BUILTIN) st = pc_backbone_reserve(bb, n, h, w);
        else if (!st && (n < 1 || h < 1 || w < 1 || n > 65536 || h > 65536 || w > 65536))
            st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: bad size %d x %d x %d", (int)n, (int)h, (int)w);
        else if (!st) {
            int32_t oh, ow;
            st = pc_backbone_out_size(bb, bb->max_layer, h, w, &oh, &ow);
        }
    }
    if (!st && bb->conv_path == PC_CONV_ONEDNN) {
        pc_dnn_plan *p = NULL;
        st = get_plan(bb, n, h, w, &p);
        if (!st) st = pc_dnn_plan_forward(p, in, layer_mask, outs);
    } else if (!st) {
        bb->spec->family->forward(bb, in, n, h, w, layer_mask, outs);
        st = pc_deadline_check("in the backbone"); /* the family's loop stops early past a deadline */
    }
    if (st) pc_copy_error(bb->errmsg);
    return st;
}
