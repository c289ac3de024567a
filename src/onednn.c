/*
 * onednn.c - the library's oneDNN engine, the ISA it dispatches to, and the precision queries of the
 * public API (pc_precision_*, pc_compute_isa).
 */
#include "onednn.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;

static void engine_create(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t pc_dnnl_engine(void) {
    pthread_once(&engine_once, engine_create);
    return engine;
}

static pthread_once_t stream_once = PTHREAD_ONCE_INIT;
static pthread_key_t stream_key;
static int stream_key_ok;

static void stream_free(void *s) { dnnl_stream_destroy((dnnl_stream_t)s); }
static void stream_key_create(void) { stream_key_ok = pthread_key_create(&stream_key, stream_free) == 0; }

dnnl_stream_t pc_dnnl_stream(void) {
    dnnl_engine_t e = pc_dnnl_engine();
    pthread_once(&stream_once, stream_key_create);
    if (!e || !stream_key_ok) return NULL;
    dnnl_stream_t s = pthread_getspecific(stream_key);
    if (s) return s;
    if (dnnl_stream_create(&s, e, dnnl_stream_default_flags) != dnnl_success) return NULL;
    if (pthread_setspecific(stream_key, s)) {
        dnnl_stream_destroy(s);
        return NULL;
    }
    return s;
}

dnnl_cpu_isa_t pc_dnnl_isa(void) { return dnnl_get_effective_cpu_isa(); }

const char *pc_dnnl_isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_all: return "any";
    default: return "other";
    }
}

static int isa_has(dnnl_cpu_isa_t isa, dnnl_cpu_isa_t want) {
    return ((unsigned)isa & (unsigned)want) == (unsigned)want;
}

int pc_dnnl_bf16_native(void) { return isa_has(pc_dnnl_isa(), dnnl_cpu_isa_avx512_core_bf16); }
int pc_dnnl_avx512(void) { return isa_has(pc_dnnl_isa(), dnnl_cpu_isa_avx512_core); }
int pc_dnnl_amx(void) { return isa_has(pc_dnnl_isa(), dnnl_cpu_isa_avx512_core_amx); }

pc_status pc_dnnl_fail(dnnl_status_t s, const char *what) {
    pc_status st = s == dnnl_out_of_memory ? PC_ERR_NO_MEMORY : s == dnnl_unimplemented ? PC_ERR_UNSUPPORTED
                                                                                        : PC_ERR_INTERNAL;
    return pc_fail(st, "%s: oneDNN %s", what, dnnl_status2str(s));
}

const char *pc_dnnl_impl(const_dnnl_primitive_desc_t pd) {
    const char *s = NULL;
    if (!pd || dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) return "?";
    return s;
}

/* ---- public API ---- */

const char *pc_compute_isa(void) { return pc_dnnl_isa_name(pc_dnnl_isa()); }

const char *pc_precision_name(pc_precision p) {
    switch (p) {
    case PC_PRECISION_F32: return "f32";
    case PC_PRECISION_BF16: return "bf16";
    default: return "unknown";
    }
}

int pc_precision_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "f32") || !strcmp(name, "fp32") || !strcmp(name, "float32")) return PC_PRECISION_F32;
    if (!strcmp(name, "bf16") || !strcmp(name, "bfloat16")) return PC_PRECISION_BF16;
    return -1;
}

int pc_precision_supported(pc_precision p, char *why, size_t why_size) {
    if (why && why_size) why[0] = '\0';
    if (p == PC_PRECISION_F32) return 1;
    if (p != PC_PRECISION_BF16) {
        if (why && why_size) snprintf(why, why_size, "unknown precision %d", (int)p);
        return 0;
    }
    if (pc_dnnl_bf16_native()) return 1;
    if (why && why_size) {
        const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
        if (!cap) cap = getenv("DNNL_MAX_CPU_ISA");
        snprintf(why, why_size,
                 "bf16 needs a CPU with AVX512-BF16 or AMX-BF16 instructions; the compute library runs %s "
                 "here%s%s%s",
                 pc_compute_isa(), cap ? " (capped by ONEDNN_MAX_CPU_ISA=" : "", cap ? cap : "", cap ? ")" : "");
    }
    return 0;
}
