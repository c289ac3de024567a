/*
 * bench_cpuinfo.c - prints the platform lines of bench/cpuinfo.h (CPU model, instruction sets, what we
 * were compiled for, the OpenBLAS core our binaries get) for the shell benchmarks (bench/cpuinfo.sh).
 * Usage: bench_cpuinfo
 */
#include "cpuinfo.h"

int main(void) {
    bench_platform(stdout, 1);
    return 0;
}
