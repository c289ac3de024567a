"""cpuinfo.py - the platform lines of the PyTorch side of a benchmark (the C side: bench/cpuinfo.h).

platform(): the CPU model and the instruction sets that change PyTorch's or OpenBLAS's kernels (avx2,
fma, avx512f, avx512_bf16, amx_tile, amx_bf16), torch's version and the CPU capability its kernels
dispatch to (torch.backends.cpu.get_cpu_capability() where it exists; torch 1.13 only has the
"CPU capability usage:" line of torch.__config__.show()), and the core of every OpenBLAS loaded into
this process (numpy's, and torch's if it uses one), asked through openblas_get_corename(); plus the
environment variables that force any of these (OPENBLAS_CORETYPE, ONEDNN_MAX_CPU_ISA,
ATEN_CPU_CAPABILITY). Printed to stderr: the benchmarks' stdout is parsed by their shell scripts.
Skipped when PC_BENCH_PLATFORM_SHOWN is set (bench/cpuinfo.sh has printed it already), unless forced.
Run as a script: `python3 bench/cpuinfo.py` prints it (to stdout).
"""
import ctypes
import os
import re
import sys

ISA = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_lines():
    model, flags, n = "unknown", set(), 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "processor":
                    n += 1
                elif key == "model name" and model == "unknown":
                    model = val
                elif key == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return "platform: cpu %s, %d logical cpus; isa: %s" % (
        model, n, " ".join(("" if i in flags else "-") + i for i in ISA))


def torch_line():
    try:
        import torch
    except ImportError:
        return "platform: torch not importable"
    cap = None
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get is not None:
        cap = get()
    else:
        m = re.search(r"CPU capability usage:\s*(\S+)", torch.__config__.show())
        cap = m.group(1) if m else "unknown"
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return "platform: torch %s, CPU capability %s, BLAS %s" % (torch.__version__, cap, blas.group(1) if blas else "?")


def openblas_lines():
    """openblas_get_corename() of every libopenblas mapped into this process."""
    seen, out = set(), []
    try:
        with open("/proc/self/maps") as f:
            libs = [l.split()[-1] for l in f if "openblas" in l and ".so" in l]
    except OSError:
        libs = []
    cores = {}
    for lib in libs:
        if lib in seen:
            continue
        seen.add(lib)
        try:
            fn = ctypes.CDLL(lib).openblas_get_corename
            fn.restype = ctypes.c_char_p
            cores.setdefault(fn().decode(), []).append(os.path.basename(lib))
        except (OSError, AttributeError):
            pass
    for core, names in cores.items():
        out.append("platform: openblas core %s (%s)" % (core, ", ".join(names)))
    return out or ["platform: no OpenBLAS loaded in this process"]


def platform(file=sys.stderr, force=False):
    if not force and os.environ.get("PC_BENCH_PLATFORM_SHOWN"):
        return
    import numpy  # noqa: F401  (loads numpy's BLAS, so that its core is listed)
    env = ", ".join("%s=%s" % (k, os.environ[k]) for k in ("OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA",
                                                            "ATEN_CPU_CAPABILITY") if k in os.environ)
    lines = [cpu_lines(), torch_line()] + openblas_lines()
    lines.append("platform: forced by the environment: %s" % (env or "nothing"))
    print("\n".join(lines), file=file, flush=True)


if __name__ == "__main__":
    platform(sys.stdout, force=True)
