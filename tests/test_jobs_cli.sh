#!/bin/sh
# test_jobs_cli.sh - images in flight (`--jobs N`, docs/threads.md) with the real ResNet-18 on MVTec
# bottle at 128 x 128 (a tiny calibrated model):
#  - predict --jobs 2 --threads 2 and --jobs 3 --threads 3 (one thread per image) print the same lines
#    in the same (input) order as --jobs 1 --threads 1, JSON and table, timings aside, including an
#    unreadable image in the middle (exit 3, its error on stderr); every anomaly map file is identical
#    byte for byte; --jobs 2 --threads 4 (two threads per image) prints what --jobs 1 --threads 2 does;
#  - eval --jobs 2 --threads 2 writes the same JSON as --jobs 1 --threads 1 except the timings, and
#    reports images_per_s > 0;
#  - the stderr summary gives images/s and the split ("2 jobs x 1 thread"); the default rule (1 job on
#    2 threads, 2 jobs x 2 threads on 4); under `taskset -c CPU` without OMP_NUM_THREADS the default is
#    1 thread; a bad --jobs is exit 2.
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR. Exit 77 (skip) without the data or weights.
set -eu
cli=${PC_CLI:?}
shared=${PC_SHARED_DIR:-/work/shared}
data=$shared/data/mvtec_ad/bottle
weights=$shared/weights/resnet18_in1k_to_layer3.safetensors
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -d "$data/train/good" ] && [ -f "$weights" ] || { echo "SKIP: no bottle data or ResNet-18 weights in $shared"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_jobs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"

"$cli" fit --weights "$weights" --resize 128 --crop 128 --coreset 0.05 --no-progress --threads 2 -o raw.pcm \
    "$data/train/good/000.png" "$data/train/good/001.png" "$data/train/good/002.png" "$data/train/good/003.png" \
    >fit.log 2>&1 || { cat fit.log >&2; fail "fit failed"; }
"$cli" calibrate -m raw.pcm --out cal.pcm --no-progress --threads 2 \
    "$data/test/good/000.png" "$data/test/good/001.png" "$data/test/good/002.png" >cal.log 2>&1 ||
    { cat cal.log >&2; fail "calibrate failed"; }

# 11 images and an unreadable one in the middle
printf 'not an image' >broken.png
set -- "$data/test/good/003.png" "$data/test/good/004.png" "$data/test/broken_large/000.png" \
    "$data/test/broken_small/000.png" "$data/test/contamination/000.png" broken.png \
    "$data/test/good/005.png" "$data/test/broken_large/001.png" "$data/test/broken_small/001.png" \
    "$data/test/contamination/001.png" "$data/test/good/006.png" "$data/test/good/007.png"

predict() { # predict NAME JOBS THREADS [ARGS...]: stdout NAME.out, stderr NAME.err, exit code NAME.rc
    name=$1 jobs=$2 threads=$3
    shift 3
    rc=0
    "$cli" predict -m cal.pcm --jobs "$jobs" --threads "$threads" "$@" >"$name.out" 2>"$name.err" || rc=$?
    echo "$rc" >"$name.rc"
}
predict j1 1 1 --json --maps maps1 "$@"
predict j2 2 2 --json --maps maps2 "$@"
predict j3 3 3 --json --maps maps3 "$@"
# 2 threads per image: two jobs run multi-threaded OpenMP loops and OpenBLAS calls side by side
predict k1 1 2 --json "$@"
predict k2 2 4 --json "$@"
predict t1 1 1 "$@"
predict t2 2 2 "$@"
for n in j1 j2 j3 k1 k2 t1 t2; do
    [ "$(cat $n.rc)" = 3 ] || { cat $n.err >&2; fail "$n: exit $(cat $n.rc), expected 3 (one unreadable image)"; }
    grep -q "broken.png" $n.err || fail "$n: the unreadable image is not named on stderr: $(cat $n.err)"
    grep -q "predict: 12 images in .* s, [0-9.]* images/s" $n.err || fail "$n: no images/s summary: $(cat $n.err)"
done
grep -q "(2 jobs x 1 thread)" j2.err || fail "j2: the summary does not say 2 jobs x 1 thread: $(cat j2.err)"
grep -q "(3 jobs x 1 thread)" j3.err || fail "j3: the summary does not say 3 jobs x 1 thread: $(cat j3.err)"
[ "$(wc -l <j1.out)" -eq 11 ] || fail "j1: expected 11 JSON lines, got $(wc -l <j1.out)"
grep -q '"regions": \[{' j1.out || fail "j1: no image with regions (the test would not compare them)"
strip_json() { sed -e 's/, "ms": [0-9.]*}$/}/' -e 's/maps[123]\//maps\//' "$1"; }
strip_table() { sed -e 's/ *[0-9.]*$//' "$1"; }
strip_json j1.out >j1.s; strip_json j2.out >j2.s; strip_json j3.out >j3.s
cmp -s j1.s j2.s || { diff j1.s j2.s >&2; fail "--jobs 2 printed other JSON lines than --jobs 1"; }
cmp -s j1.s j3.s || { diff j1.s j3.s >&2; fail "--jobs 3 printed other JSON lines than --jobs 1"; }
strip_json k1.out >k1.s; strip_json k2.out >k2.s
cmp -s k1.s k2.s || { diff k1.s k2.s >&2; fail "--jobs 2 --threads 4 printed other JSON lines than --jobs 1 --threads 2"; }
grep -q "(2 jobs x 2 threads)" k2.err || fail "k2: the summary does not say 2 jobs x 2 threads: $(cat k2.err)"
strip_table t1.out >t1.s; strip_table t2.out >t2.s
cmp -s t1.s t2.s || { diff t1.s t2.s >&2; fail "--jobs 2 printed another table than --jobs 1"; }
n_maps=0
for f in maps1/*; do
    b=${f#maps1/}
    cmp -s "$f" "maps2/$b" || fail "map $b differs between --jobs 1 and --jobs 2"
    cmp -s "$f" "maps3/$b" || fail "map $b differs between --jobs 1 and --jobs 3"
    n_maps=$((n_maps + 1))
done
[ $n_maps -eq 11 ] || fail "expected 11 maps, found $n_maps"

# eval: same metrics, bit for bit, at one thread per image
"$cli" eval -m cal.pcm --jobs 1 --threads 1 --json e1.json "$data" >e1.out 2>e1.err || { cat e1.err >&2; fail "eval --jobs 1 failed"; }
"$cli" eval -m cal.pcm --jobs 2 --threads 2 --json e2.json "$data" >e2.out 2>e2.err || { cat e2.err >&2; fail "eval --jobs 2 failed"; }
grep -q '"images_per_s": [0-9]*\.[0-9]*[1-9]' e2.json || fail "eval JSON lacks a positive images_per_s: $(cat e2.json)"
grep -q "images/s" e2.out || fail "eval table lacks images/s: $(cat e2.out)"
strip_eval() { sed -e 's/"mean_predict_ms": [0-9.]*, "images_per_s": [0-9.]*, //' "$1"; }
strip_eval e1.json >e1.s; strip_eval e2.json >e2.s
grep -q '"image_auroc": 0\.[0-9]' e1.s || fail "eval JSON has no image_auroc: $(cat e1.s)"
cmp -s e1.s e2.s || { diff e1.s e2.s >&2; fail "eval --jobs 2 gave other results than --jobs 1"; }

# the default rule and the default thread count
one=$data/test/good/003.png
"$cli" predict -m cal.pcm --threads 2 "$one" >/dev/null 2>d2.err || fail "predict --threads 2 failed"
grep -q "(1 job x 2 threads)" d2.err || fail "default on 2 threads is not 1 job x 2 threads: $(cat d2.err)"
"$cli" predict -m cal.pcm --threads 4 "$one" "$one" >/dev/null 2>d4.err || fail "predict --threads 4 failed"
grep -q "(2 jobs x 2 threads)" d4.err || fail "default on 4 threads is not 2 jobs x 2 threads: $(cat d4.err)"
if taskset -V >/dev/null 2>&1; then
    cpu=$(taskset -cp $$ | sed 's/.*: *//; s/[-,].*//')
    env -u OMP_NUM_THREADS taskset -c "$cpu" "$cli" predict -m cal.pcm "$one" >/dev/null 2>ts.err ||
        fail "predict under taskset failed"
    grep -q "(1 job x 1 thread)" ts.err || fail "under taskset -c $cpu the default is not 1 thread: $(cat ts.err)"
else
    echo "note: taskset (util-linux) absent, the affinity default is not checked here"
fi
rc=0; "$cli" predict -m cal.pcm --jobs -1 "$one" >/dev/null 2>bad.err || rc=$?
[ $rc = 2 ] || fail "--jobs -1: exit $rc, expected 2"
rc=0; "$cli" eval -m cal.pcm --jobs x "$data" >/dev/null 2>bad.err || rc=$?
[ $rc = 2 ] || fail "eval --jobs x: exit $rc, expected 2"
echo "ok: predict and eval with 1, 2 and 3 jobs agree; images/s reported"
