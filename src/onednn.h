/*
 * onednn.h - the library's one oneDNN engine and what it tells of the CPU. oneDNN picks its kernels
 * (AVX2, AVX-512, AVX512-BF16, AMX) when a primitive is created, from the CPU it runs on, capped by
 * ONEDNN_MAX_CPU_ISA; one build is therefore fast everywhere. Internal to the library.
 *
 * oneDNN is the OpenMP build (Debian's libdnnl): its primitives run on the calling thread's OpenMP
 * pool, the same one our loops and OpenBLAS use, so thread counts set with pc_set_num_threads(_local)
 * hold for it too.
 */
#ifndef PC_ONEDNN_H
#define PC_ONEDNN_H

#include <oneapi/dnnl/dnnl.h>

#include "internal.h"

/* The CPU engine, created on first use (thread-safe); NULL when oneDNN could not create one. */
dnnl_engine_t pc_dnnl_engine(void);

/* The calling thread's stream on that engine, created on its first use and destroyed when the thread
 * exits (one small object per thread for the process's life, never one per call); NULL on failure.
 * Primitives run on the calling thread's OpenMP pool, so one stream per thread is all they need. */
dnnl_stream_t pc_dnnl_stream(void);

/* The ISA oneDNN dispatches to, and its name ("avx2", "avx512_core_bf16", ...). */
dnnl_cpu_isa_t pc_dnnl_isa(void);
const char *pc_dnnl_isa_name(dnnl_cpu_isa_t isa);

/* 1 when bf16 products run natively: AVX512-BF16 (avx512_core_bf16) or AMX (avx512_core_amx). */
int pc_dnnl_bf16_native(void);
/* 1 when oneDNN runs AVX-512 (avx512_core or above). */
int pc_dnnl_avx512(void);
/* 1 when oneDNN runs AMX tiles. */
int pc_dnnl_amx(void);

/* pc_fail with a oneDNN status: PC_ERR_NO_MEMORY for out_of_memory, PC_ERR_UNSUPPORTED for
 * unimplemented, PC_ERR_INTERNAL otherwise; the message is "<what>: oneDNN <status>". */
pc_status pc_dnnl_fail(dnnl_status_t s, const char *what);

/* The implementation oneDNN chose for a primitive descriptor ("brg:avx512_core", "jit:avx2", ...),
 * or "?" when it cannot say. */
const char *pc_dnnl_impl(const_dnnl_primitive_desc_t pd);

#endif /* PC_ONEDNN_H */
