/*
 * cpuinfo.h - the platform line every benchmark prints first (to stderr, so that the figures a script
 * parses from stdout are untouched): the CPU model, which of the instruction sets that change our or
 * PyTorch's kernels it has (avx2, fma, avx512f, avx512_bf16, amx_tile, amx_bf16), what our code was
 * compiled for, the OpenBLAS core in use (openblas_get_corename(), and OPENBLAS_CORETYPE when it
 * forces one) and the instruction set oneDNN dispatches to (pc_compute_isa(), after any
 * ONEDNN_MAX_CPU_ISA cap). Speed figures only mean something next to this: OpenBLAS, oneDNN and
 * PyTorch pick kernels by CPU at run time. bench/cpuinfo.sh and bench/cpuinfo.py print the same for scripts and the PyTorch
 * side. Set PC_BENCH_PLATFORM_SHOWN=1 (cpuinfo.sh does) to print it only once per script.
 */
#ifndef PC_BENCH_CPUINFO_H
#define PC_BENCH_CPUINFO_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchcore.h"

char *openblas_get_corename(void); /* OpenBLAS (cblas.h's declaration; its include path varies) */

/* Print the platform lines to out; unless force, nothing when PC_BENCH_PLATFORM_SHOWN is set. */
static inline void bench_platform(FILE *out, int force) {
    if (!force && getenv("PC_BENCH_PLATFORM_SHOWN")) return;
    static const char *const isa[] = {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"};
    char model[256] = "unknown", flags[8192] = "", line[8192];
    int ncpu = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v += 1 + (v[1] == ' ');
        v[strcspn(v, "\n")] = 0;
        if (!strncmp(line, "processor", 9)) ncpu++;
        else if (!strncmp(line, "model name", 10) && !strcmp(model, "unknown")) snprintf(model, sizeof model, "%s", v);
        else if (!strncmp(line, "flags", 5) && !*flags) snprintf(flags, sizeof flags, " %s ", v);
    }
    if (f) fclose(f);
    fprintf(out, "platform: cpu %s, %d logical cpus; isa:", model, ncpu);
    for (size_t i = 0; i < sizeof isa / sizeof *isa; i++) {
        char key[32];
        snprintf(key, sizeof key, " %s ", isa[i]);
        fprintf(out, " %s%s", strstr(flags, key) ? "" : "-", isa[i]);
    }
    fprintf(out, "\nplatform: ours compiled for%s%s%s%s; openblas core %s", /* -march flags of this binary */
#if defined(__AVX2__)
            " avx2",
#else
            " (no avx2)",
#endif
#if defined(__FMA__)
            " fma",
#else
            "",
#endif
#if defined(__AVX512F__)
            " avx512f",
#else
            "",
#endif
#if defined(__AMX_TILE__)
            " amx_tile",
#else
            "",
#endif
            openblas_get_corename());
    const char *ct = getenv("OPENBLAS_CORETYPE"), *dn = getenv("ONEDNN_MAX_CPU_ISA");
    fprintf(out, " (OPENBLAS_CORETYPE %s%s%s); onednn isa %s\n", ct ? ct : "unset", dn ? ", ONEDNN_MAX_CPU_ISA " : "",
            dn ? dn : "", pc_compute_isa());
    fflush(out);
}

#endif
