# Thin driver over CMake. `make` builds (CLI at build/patchcore), `make test` runs every test,
# `make install PREFIX=... DESTDIR=...` installs. See README.md for the options.
PREFIX    ?= /usr/local
BUILD     ?= build
NATIVE    ?= 0
SANITIZE  ?= 0
MPI       ?= 0
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON    ?= /usr/bin/python3
SHARED    ?= $(or $(PATCHCORE_SHARED),../shared)
BOTTLE     = $(SHARED)/data/mvtec_ad/bottle
R18        = $(SHARED)/weights/resnet18_in1k_to_layer3.pth
CMAKE_ARGS = -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DPC_NATIVE=$(if $(filter 1,$(NATIVE)),ON,OFF) \
             -DPC_SANITIZE=$(if $(filter 1,$(SANITIZE)),ON,OFF) \
             -DPC_MPI=$(if $(filter 1,$(MPI)),ON,OFF)


.PHONY: mpi mpi-test mpich-test
.PHONY: all configure build test test-all test-avx2 test-native-blas test-isa tsan-test refs asan asan-test install \
        clean bench fuzz fuzz-build demo man

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS) $(CMAKE_EXTRA)

configure:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS) $(CMAKE_EXTRA)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Reference tensors made by PyTorch/torchvision/PIL/scipy/sklearn scripts in tests/ref/.
refs:
	PYTHON=$(PYTHON) sh tools/gen_refs.sh $(BUILD)/ref

test: build refs
	cd $(BUILD) && ctest --output-on-failure -j 1

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer (separate build folder).
asan:
	$(MAKE) build BUILD=build-asan SANITIZE=1

asan-test:
	$(MAKE) refs BUILD=build
	$(MAKE) build BUILD=build-asan SANITIZE=1
	rm -rf build-asan/ref && ln -s ../build/ref build-asan/ref
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j 1

# Threads predicting on one model under ThreadSanitizer (build-tsan). libgomp is not TSan-instrumented,
# so OpenMP's own barriers show as false races: the tests run with OMP_NUM_THREADS=1 and one OpenBLAS
# thread, leaving only the tests' pthreads (the threads whose safety is in question) in play.
tsan-test:
	cmake -S . -B build-tsan $(CMAKE_ARGS) -DPC_TSAN=ON -DPC_BUILD_BENCH=OFF
	cmake --build build-tsan -j $(JOBS) --target test_model_threads test_concurrency test_threads
	cd build-tsan && PC_SHARED_DIR=$(abspath $(SHARED)) OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./test_model_threads
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  ctest -R test_concurrency --output-on-failure
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  ctest -R test_threads --output-on-failure

# The tests that compare results of kernels that dispatch on the CPU at run time (OpenBLAS picks its
# SGEMM core by CPU; PyTorch, the oracle of test_python, its own kernels) with an independent oracle:
# nn layers, patch features, coreset, kNN, scoring, the whole pipeline, evaluation and the binding's
# fit. No test may depend on which of two candidates within rounding a kernel picks (docs/robustness.md,
# "Results that do not depend on the CPU"); these passes check it on the machine at hand. Left out to
# keep CI short: the tests of identities within the library (pruned = brute kNN, streamed = in-memory
# fit, concurrent = serial predict, CLI runs), which hold under any one core, and test_backbone (45 s;
# tolerances on continuous values). ISA_TESTS="..." to choose.
ISA_TESTS ?= test_nn|test_features|test_coreset|test_knn|test_scoring|test_pipeline|test_eval|test_python|test_densenet|test_ensemble|test_ensemble_cli|test_update|test_tiles|test_tiles_eval|test_roi
ISA_CTEST  = ctest -R '^($(subst $(space),,$(ISA_TESTS)))$$' --output-on-failure -j 1
space     := $(subst ,, )

# Those tests with the AVX2 kernels forced: OpenBLAS's Haswell core (as on the AVX2-only Zen3 machines),
# oneDNN capped at AVX2 (for when a oneDNN path exists), PyTorch's ATen at AVX2. bench_cpuinfo shows
# that OpenBLAS took the setting.
test-avx2: build refs
	@cd $(BUILD) && if [ -x ./bench_cpuinfo ]; then OPENBLAS_CORETYPE=Haswell ./bench_cpuinfo | tee /dev/stderr | \
	  grep -q 'openblas core Haswell' || { echo "test-avx2: OpenBLAS did not take OPENBLAS_CORETYPE=Haswell" >&2; exit 1; }; fi
	cd $(BUILD) && OPENBLAS_CORETYPE=Haswell ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(ISA_CTEST)

# The same tests with every kernel choice left to the CPU (OPENBLAS_CORETYPE etc. removed from the
# environment): AVX-512 and AVX512-BF16 OpenBLAS cores (SkylakeX, Cooperlake) where the CPU has them.
test-native-blas: build refs
	@cd $(BUILD) && if [ -x ./bench_cpuinfo ]; then env -u OPENBLAS_CORETYPE ./bench_cpuinfo; fi
	cd $(BUILD) && env -u OPENBLAS_CORETYPE -u ONEDNN_MAX_CPU_ISA -u ATEN_CPU_CAPABILITY $(ISA_CTEST)

# The extra instruction-set pass of CI: the forced AVX2 pass (test-avx2) on a machine whose environment
# leaves OpenBLAS to pick its own (AVX-512) kernels. Where the environment already sets
# OPENBLAS_CORETYPE, `make test` ran under that setting (Haswell = the AVX2 pass on this project's
# machines) and it is left alone: the workplace sets it on processors where OpenBLAS's own choice can
# crash or compute wrong results, so CI never unsets or changes it (test-native-blas is for a person
# who knows the machine).
test-isa:
ifeq ($(origin OPENBLAS_CORETYPE),environment)
	@echo "test-isa: OPENBLAS_CORETYPE=$(OPENBLAS_CORETYPE) is set by the environment: make test already ran under it; no second pass"
else
	$(MAKE) test-avx2
endif

# The distributed fit (docs/mpi.md): an MPI build of the CLI in build-mpi (`make MPI=1` builds one in
# $(BUILD)), then tests/test_mpi.sh under mpirun with 1, 2, 3 and 5 ranks, every model compared with cmp
# against the plain build's single-process fit.
# MPI_CC=mpicc.mpich MPI_BUILD=build-mpich builds against MPICH instead (Debian's libmpich-dev; tests run
# with its mpiexec when MPIRUN=mpiexec.mpich).
MPI_BUILD ?= build-mpi
MPI_CC    ?=
MPIRUN    ?= mpirun
mpi:
	$(MAKE) build BUILD=$(MPI_BUILD) MPI=1 \
	  CMAKE_EXTRA="-DPC_BUILD_TESTS=OFF -DPC_BUILD_BENCH=OFF $(if $(MPI_CC),-DMPI_C_COMPILER=$(MPI_CC))"

mpi-test: build mpi
	PC_CLI=$(BUILD)/patchcore PC_MPI_CLI=$(MPI_BUILD)/patchcore PC_MPIRUN=$(MPIRUN) \
	  PC_SHARED_DIR=$(abspath $(SHARED)) PC_SOURCE_DIR=$(CURDIR) OMP_NUM_THREADS=2 sh tests/test_mpi.sh
	@if command -v mpicc.mpich >/dev/null; then \
	  mpicc.mpich -fsyntax-only -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Werror -Iinclude -Isrc -Icli mpi/*.c && \
	  echo "mpi-test: mpi/*.c compiles against MPICH's mpi.h too (make mpich-test builds and tests with MPICH)"; fi

# The same tests with an MPICH build run by MPICH's mpiexec (Debian libmpich-dev).
mpich-test:
	$(MAKE) mpi-test MPI_BUILD=build-mpich MPI_CC=mpicc.mpich MPIRUN=mpiexec.mpich

# `make test`, the extra instruction-set pass, the MPI tests, then the whole suite again under ASan +
# UBSan (what CI runs).
test-all: test test-isa mpi-test asan-test

# libFuzzer targets (clang; `scripts/setup.sh fuzz` installs it). Each target runs FUZZ_SECONDS on a
# working corpus in build-fuzz/corpus/<target>, seeded from fuzz/corpus/<target>; crashers are
# written to build-fuzz/ and belong in fuzz/regressions/<target>/ (replayed by test_fuzz_regressions).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image weights modelfile cli serve serve_http
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Iinclude -Isrc
FUZZ_LIBS     = -lpng -ljpeg -lz -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -ldnnl -lm
FUZZ_SRC_image     = src/image.c src/preprocess.c src/status.c
FUZZ_SRC_weights   = src/weights.c src/status.c
FUZZ_SRC_modelfile = src/modelfile.c src/status.c
FUZZ_SRC_cli       = $(filter-out cli/main.c,$(wildcard cli/*.c)) $(wildcard src/*.c src/backbone/*.c) -Icli -fopenmp
FUZZ_SRC_serve     = # fuzz_serve.c includes server/parse.c, which needs nothing else
FUZZ_SRC_serve_http = $(filter-out cli/main.c,$(wildcard cli/*.c)) $(wildcard src/*.c) -Icli -Iserver -fopenmp -ldnnl
FUZZ_OPTS_cli      = -close_fd_mask=3 -dict=fuzz/cli.dict

build-fuzz/fuzz_%: fuzz/fuzz_%.c src/*.c src/*.h src/backbone/*.c src/backbone/*.h cli/*.c cli/*.h server/*.c server/*.h include/patchcore.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_SRC_$*) $(FUZZ_LIBS) -o $@

fuzz-build: $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t; opts=; [ $$t = cli ] && opts="$(FUZZ_OPTS_cli)"; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	    -max_len=65536 $$opts -artifact_prefix=build-fuzz/$$t- -print_final_stats=1 \
	    build-fuzz/corpus/$$t fuzz/corpus/$$t 2>build-fuzz/$$t.log || { tail -40 build-fuzz/$$t.log; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done' build-fuzz/$$t.log; \
	done

# The main job on built-in defaults: fit on the MVTec AD bottle training images with the shared
# ImageNet ResNet-18 (layers 2+3, 10% coreset), then evaluate it on the bottle test set (image and
# pixel AUROC, AUPRO, F1-max) with an HTML report ($(BUILD)/bottle-report.html). The model in
# $(BUILD)/bottle.pcm works with `predict` straight away.
demo: build
	@test -d $(BOTTLE) || { echo "demo: $(BOTTLE) not found (set PATCHCORE_SHARED)" >&2; exit 1; }
	$(BUILD)/patchcore fit --weights $(R18) -o $(BUILD)/bottle.pcm $(BOTTLE)/train/good
	$(BUILD)/patchcore eval -m $(BUILD)/bottle.pcm --json $(BUILD)/bottle-eval.json \
	  --report $(BUILD)/bottle-report.html $(BOTTLE)

# CLI, libraries (shared with a versioned soname, and static), header, pkg-config file, man pages.
# PREFIX is applied at install time (patchcore.pc included), whatever the build was configured with.
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

# Man pages patchcore(1) and patchcore-VERB(1) from docs/cli.md, into $(BUILD)/man.
man: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target man

bench: build
	sh bench/run.sh $(BUILD)

clean:
	rm -rf build build-asan build-fuzz build-tsan build-mpi build-mpich
