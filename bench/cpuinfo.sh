#!/bin/sh
# cpuinfo.sh - the platform lines a benchmark script prints first: CPU model and instruction sets
# (avx2, fma, avx512f, avx512_bf16, amx_tile, amx_bf16), what our code was compiled for and the
# OpenBLAS core our binaries get (BUILD_DIR/bench_cpuinfo, bench/cpuinfo.h), and PyTorch's CPU
# capability and OpenBLAS cores (bench/cpuinfo.py). Speed figures only mean something next to these:
# OpenBLAS, oneDNN and PyTorch choose kernels by CPU at run time.
# Sourced by the bench scripts: `. "$here/cpuinfo.sh"; bench_platform "$build"` prints once and exports
# PC_BENCH_PLATFORM_SHOWN=1, so that the programs and nested scripts it starts do not repeat it.
# Run directly: sh bench/cpuinfo.sh [BUILD_DIR].
bench_platform() {
  [ -n "${PC_BENCH_PLATFORM_SHOWN:-}" ] && return 0
  _pb_build=${1:-build}
  _pb_here=${PC_BENCH_DIR:-$(dirname "$0")}
  if [ -x "$_pb_build/bench_cpuinfo" ]; then
    "$_pb_build/bench_cpuinfo"
  else
    echo "platform: $_pb_build/bench_cpuinfo not built; cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  fi
  /usr/bin/python3 "$_pb_here/cpuinfo.py" 2>/dev/null | grep -v '^platform: cpu ' \
    || echo "platform: /usr/bin/python3 or torch unavailable: no PyTorch side"
  PC_BENCH_PLATFORM_SHOWN=1
  export PC_BENCH_PLATFORM_SHOWN
}

case "$0" in
  *cpuinfo.sh) bench_platform "${1:-build}" ;;
esac
