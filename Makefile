# Thin driver over CMake. `make` builds (CLI at build/patchcore), `make test` runs every test,
# `make install PREFIX=... DESTDIR=...` installs. See README.md for the options.
PREFIX    ?= /usr/local
BUILD     ?= build
NATIVE    ?= 0
SANITIZE  ?= 0
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
PYTHON    ?= /usr/bin/python3
SHARED    ?= $(or $(PATCHCORE_SHARED),../shared)
BOTTLE     = $(SHARED)/data/mvtec_ad/bottle
R18        = $(SHARED)/weights/resnet18_in1k_to_layer3.pth
CMAKE_ARGS = -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DPC_NATIVE=$(if $(filter 1,$(NATIVE)),ON,OFF) \
             -DPC_SANITIZE=$(if $(filter 1,$(SANITIZE)),ON,OFF)

.PHONY: all configure build test test-all tsan-test refs asan asan-test install clean bench fuzz fuzz-build demo man

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

configure:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

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
	cmake --build build-tsan -j $(JOBS) --target test_model_threads test_concurrency
	cd build-tsan && PC_SHARED_DIR=$(abspath $(SHARED)) OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./test_model_threads
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  ctest -R test_concurrency --output-on-failure

# `make test` plus the whole suite again under ASan + UBSan (what CI runs).
test-all: test asan-test

# libFuzzer targets (clang; `scripts/setup.sh fuzz` installs it). Each target runs FUZZ_SECONDS on a
# working corpus in build-fuzz/corpus/<target>, seeded from fuzz/corpus/<target>; crashers are
# written to build-fuzz/ and belong in fuzz/regressions/<target>/ (replayed by test_fuzz_regressions).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image weights modelfile cli
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Iinclude -Isrc
FUZZ_LIBS     = -lpng -ljpeg -lz -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lm
FUZZ_SRC_image     = src/image.c src/preprocess.c src/status.c
FUZZ_SRC_weights   = src/weights.c src/status.c
FUZZ_SRC_modelfile = src/modelfile.c src/status.c
FUZZ_SRC_cli       = $(filter-out cli/main.c,$(wildcard cli/*.c)) $(wildcard src/*.c) -Icli -fopenmp
FUZZ_OPTS_cli      = -close_fd_mask=3 -dict=fuzz/cli.dict

build-fuzz/fuzz_%: fuzz/fuzz_%.c src/*.c src/*.h cli/*.c cli/*.h include/patchcore.h
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
	rm -rf build build-asan build-fuzz build-tsan
