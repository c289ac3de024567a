#!/bin/sh
# test_mpi.sh - `patchcore fit` spread over MPI processes (docs/mpi.md), with the real ResNet-18 on a few
# bottle images. The oracle is the plain build's single-process fit (itself checked against PyTorch
# elsewhere): every model file written under mpirun must be byte-identical to it (cmp).
#
# With the plain build only (PC_CLI; how ctest runs this file):
#  - `fit --mpi` exits 2 saying the build has no MPI;
#  - started as rank 0 of 2 by a launcher (its environment, OMPI_COMM_WORLD_*), fit refuses (exit 2)
#    rather than fit every image in every process; --no-mpi fits alone.
# With an MPI build too (PC_MPI_CLI; `make mpi-test`, which CI runs), under `mpirun --oversubscribe`:
#  - samplers approx (the default), random and none, with 1, 2, 3 and 5 processes; approx and random
#    with --max-memory (the features in each process's temporary file); a region of interest; 3 images
#    in 2 batches on 5 processes (three with nothing to do). One image in the list is unreadable: it is
#    reported once, as the single-process fit reports it, and both exit 3;
#  - --json: one summary, from process 0, with the number of processes and the communication figures;
#  - failures, with a model file already in place that must stay byte for byte as it was and no
#    temporary file left: process 1 of 3 out of memory (the allocation fault hook PC_FAULT_ALLOC, given
#    to that process only), process 2 of 3 unable to write its features to its temporary file in the
#    middle of extraction (PC_FAULT_WRITE, "disk full"), process 2 of 3 unable to read one of its images
#    (relative paths, started in a folder that lacks it), and process 1 of 3 killed with SIGKILL in the
#    middle of the fit: exit non-zero, a message naming the process and the cause;
#  - usage: an ensemble is refused under --mpi.
# Environment: PC_CLI, PC_MPI_CLI (optional), PC_MPIRUN (default mpirun), PC_SHARED_DIR. Exit 77 when
# ../shared is absent.
set -eu
cli=${PC_CLI:?}
mcli=${PC_MPI_CLI:-}
mpirun=${PC_MPIRUN:-mpirun}
shared=${PC_SHARED_DIR:-}
PY=${PYTHON:-/usr/bin/python3}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
b=$shared/data/mvtec_ad/bottle
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_mpi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -f "$w" ] && [ -d "$b" ] || { echo "SKIP: ../shared absent (weights or bottle)"; exit 77; }

# 7 good images and an unreadable one in the middle, 4 batches of 2
mkdir -p "$tmp/in" "$tmp/three"
for i in 000 001 002 003 004 005 006; do ln -s "$b/train/good/$i.png" "$tmp/in/$i.png"; done
echo "not an image" > "$tmp/in/003x.png"
for i in 010 011 012; do ln -s "$b/train/good/$i.png" "$tmp/three/$i.png"; done
common="--weights $w --batch 2 --no-progress"

expect_rc() { # expect_rc RC PHRASE CMD...: exit RC and PHRASE on stderr
    want=$1 phrase=$2
    shift 2
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ $rc -eq "$want" ] && grep -q -- "$phrase" "$tmp/err" || fail "$*: exit $rc (want $want), $(cat "$tmp/err")"
}

# ---- the plain build ----
expect_rc 2 "built without MPI" "$cli" fit --mpi $common -o "$tmp/x.pcm" "$tmp/three"
[ ! -e "$tmp/x.pcm" ] || fail "plain --mpi wrote a model"
expect_rc 2 "started by an MPI launcher (rank 0 of 2)" \
    env OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 "$cli" fit $common -o "$tmp/x.pcm" "$tmp/three"
[ ! -e "$tmp/x.pcm" ] || fail "plain build under a launcher wrote a model"
env OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 "$cli" fit --no-mpi -q $common -o "$tmp/x.pcm" "$tmp/three" \
    || fail "--no-mpi under a launcher's environment"
[ -s "$tmp/x.pcm" ] || fail "--no-mpi wrote no model"
if [ -z "$mcli" ]; then
    echo "plain build: ok (the MPI checks run with an MPI build: make mpi-test)"
    exit 0
fi

# ---- the MPI build ----
command -v "$mpirun" >/dev/null || fail "$mpirun not found (scripts/setup.sh installs Open MPI)"
mcli=$(cd "$(dirname "$mcli")" && pwd)/$(basename "$mcli") # absolute: some processes start elsewhere
# Open MPI refuses to run as root unless told; --oversubscribe: more processes than the 2 cores
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mflags=""
"$mpirun" --version 2>/dev/null | grep -q "Open MPI" && mflags="--oversubscribe --bind-to none"
run_np() { # run_np NP ARGS...: the MPI build's fit on NP processes, 2/NP threads each (at least 1)
    np=$1
    shift
    t=$((2 / np)); [ $t -ge 1 ] || t=1
    "$mpirun" $mflags -np "$np" "$mcli" fit --threads $t "$@"
}

check_same() { # check_same LABEL REF_ARGS -- : single-process fit, then 1, 2, 3, 5 processes, each cmp'd
    label=$1
    shift
    rc=0
    "$cli" fit $common "$@" -o "$tmp/ref.pcm" "$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ $rc -eq 3 ] || fail "$label: single-process fit exit $rc (want 3: one image skipped): $(cat "$tmp/err")"
    for np in 1 2 3 5; do
        rc=0
        run_np $np $common "$@" -o "$tmp/np.pcm" "$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
        [ $rc -eq 3 ] || fail "$label, $np processes: exit $rc (want 3): $(cat "$tmp/err")"
        n=$(grep -c "skipped .*003x.png" "$tmp/err" || true)
        [ "$n" -eq 1 ] || fail "$label, $np processes: the unreadable image reported $n times: $(cat "$tmp/err")"
        cmp -s "$tmp/ref.pcm" "$tmp/np.pcm" || fail "$label, $np processes: the model differs from the single-process fit"
        rm -f "$tmp/np.pcm"
    done
    echo "ok: $label: 1, 2, 3 and 5 processes write the single-process model file"
}
check_same "approx greedy 10%"
check_same "random 10%" --sampler random
check_same "none" --sampler none

for args in "" "--sampler random"; do # --max-memory: each process's features in its temporary file
    "$cli" fit $common $args -o "$tmp/ref.pcm" "$tmp/in" >/dev/null 2>&1 || true
    for np in 2 3; do
        rc=0
        run_np $np $common $args --max-memory 200M -o "$tmp/np.pcm" "$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
        [ $rc -eq 3 ] || fail "--max-memory ${args:-approx}, $np processes: exit $rc: $(cat "$tmp/err")"
        cmp -s "$tmp/ref.pcm" "$tmp/np.pcm" || fail "--max-memory ${args:-approx}, $np processes: model differs"
    done
done
echo "ok: --max-memory 200M per process (approx and random, 2 and 3 processes) writes the same model"

# a region of interest: a centred disc
"$PY" - "$tmp/roi.png" <<'EOF'
import sys
import numpy as np
from PIL import Image
y, x = np.mgrid[:900, :900]
Image.fromarray((((x - 450) ** 2 + (y - 450) ** 2 < 350 ** 2) * 255).astype(np.uint8)).save(sys.argv[1])
EOF
"$cli" fit $common --roi "$tmp/roi.png" -o "$tmp/ref.pcm" "$tmp/in" >/dev/null 2>&1 || true
run_np 3 $common --roi "$tmp/roi.png" -o "$tmp/np.pcm" "$tmp/in" >/dev/null 2>&1 || true
cmp -s "$tmp/ref.pcm" "$tmp/np.pcm" || fail "region of interest, 3 processes: the model differs"
echo "ok: a region of interest on 3 processes writes the same model"

# more processes than batches: 3 images, 2 batches, 5 processes
"$cli" fit $common -q -o "$tmp/ref3.pcm" "$tmp/three" || fail "single-process fit of 3 images"
run_np 5 $common --json -o "$tmp/np3.pcm" "$tmp/three" >"$tmp/json" 2>"$tmp/err" || fail "5 processes, 3 images: $(cat "$tmp/err")"
cmp -s "$tmp/ref3.pcm" "$tmp/np3.pcm" || fail "5 processes, 3 images: the model differs"
[ "$(wc -l < "$tmp/json")" -eq 1 ] || fail "--json: $(wc -l < "$tmp/json") lines (want one summary, from process 0)"
"$PY" - "$tmp/json" <<'EOF' || fail "--json summary: $(cat "$tmp/json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ranks"] == 5, j
assert j["n_images"] == 3 and j["coreset_picks"] == j["bank_size"], j
assert j["comm_bytes"] > 0 and j["comm_seconds"] >= j["coreset_comm_seconds"] >= 0, j
assert j["features_seconds"] >= j["features_min_seconds"] >= 0 and j["gather_seconds"] >= 0, j
assert j["mpi_library"], j
EOF
echo "ok: 3 images on 5 processes write the same model; --json summary from process 0"

# ---- failures: the model file in place stays as it was ----
echo "the previous model" > "$tmp/keep.pcm"
cp "$tmp/keep.pcm" "$tmp/keep.orig"
intact() { # intact LABEL: keep.pcm unchanged, no temporary file beside it
    cmp -s "$tmp/keep.pcm" "$tmp/keep.orig" || fail "$1: the previous model file changed"
    [ "$(ls "$tmp" | grep -c '^keep\.pcm.')" -eq 0 ] || fail "$1: a temporary file was left: $(ls "$tmp")"
}
mpmd() { # mpmd ENV_FOR_RANK RANK ARGS...: 3 processes, the given environment for one of them only
    env_=$1 who=$2
    shift 2
    set -- fit --threads 1 $common "$@"
    case $who in
        1) "$mpirun" $mflags -np 1 "$mcli" "$@" : -np 1 env "$env_" "$mcli" "$@" : -np 1 "$mcli" "$@" ;;
        2) "$mpirun" $mflags -np 2 "$mcli" "$@" : -np 1 env "$env_" "$mcli" "$@" ;;
    esac
}
rc=0
# the 1050th allocation is, in this fit, the backbone's activations, at the start of the features: an
# allocation fails there and every later one too (any other place would do: the message names it)
mpmd PC_FAULT_ALLOC=1050 1 -o "$tmp/keep.pcm" "$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] || fail "process 1 out of memory: exit 0"
grep -q "patchcore: fit: rank 1 of 3: .*\(out of memory\|cannot allocate\)" "$tmp/err" \
    || fail "process 1 out of memory: $(cat "$tmp/err")"
[ "$(grep -c '^patchcore: fit:' "$tmp/err")" -eq 1 ] || fail "the failure reported more than once: $(cat "$tmp/err")"
intact "process 1 out of memory"
echo "ok: process 1 of 3 out of memory: exit $rc, \"$(grep '^patchcore: fit:' "$tmp/err" | cut -c1-100)...\""

rc=0
mpmd PC_FAULT_WRITE=1 2 --max-memory 200M -o "$tmp/keep.pcm" "$tmp/in" >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] || fail "process 2 disk full: exit 0"
grep -q "patchcore: fit: rank 2 of 3: .*No space left" "$tmp/err" || fail "process 2 disk full: $(cat "$tmp/err")"
intact "process 2 disk full"
echo "ok: process 2 of 3 cannot write its features: exit $rc, \"$(grep '^patchcore: fit:' "$tmp/err" | cut -c1-100)...\""

# process 2 cannot read one of its images: relative paths, process 2 started in a folder that lacks one
# (a host without the same files); the list is process 0's, so process 2 fails on it, naming it
mkdir -p "$tmp/w0/in" "$tmp/w1/in"
for i in 000 001 002 003 004 005; do ln -s "$b/train/good/$i.png" "$tmp/w0/in/$i.png"; done
for i in 000 001 002 003 005; do ln -s "$b/train/good/$i.png" "$tmp/w1/in/$i.png"; done
rc=0
"$mpirun" $mflags -np 2 env -C "$tmp/w0" "$mcli" fit --threads 1 $common -o "$tmp/keep.pcm" in \
    : -np 1 env -C "$tmp/w1" "$mcli" fit --threads 1 $common -o "$tmp/keep.pcm" in >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] || fail "process 2 cannot read an image: exit 0"
grep -q "patchcore: fit: rank 2 of 3: fit: cannot read a training image: in/004.png" "$tmp/err" \
    || fail "process 2 cannot read an image: $(cat "$tmp/err")"
intact "process 2 cannot read an image"
echo "ok: process 2 of 3 cannot read an image: exit $rc, \"$(grep '^patchcore: fit:' "$tmp/err" | cut -c1-100)...\""

# SIGKILL to process 1 in the middle of the fit: the launcher ends the job, process 0 says so
"$mpirun" $mflags -np 3 "$mcli" fit --threads 1 $common --coreset 0.5 -o "$tmp/keep.pcm" "$b/train/good" \
    >"$tmp/out" 2>"$tmp/err" &
job=$!
victim=
for _ in $(seq 1 300); do # the process whose launcher environment says rank 1
    for p in $(pgrep -f "$tmp/keep.pcm" || true); do
        tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx -e OMPI_COMM_WORLD_RANK=1 -e PMI_RANK=1 && victim=$p
    done
    [ -n "$victim" ] && break
    sleep 0.1
done
[ -n "$victim" ] || fail "no process 1 found to kill"
sleep 2 # well into the features
kill -9 "$victim"
rc=0
wait $job || rc=$?
[ $rc -ne 0 ] || fail "process 1 killed: exit 0"
if "$mpirun" --version 2>/dev/null | grep -q "Open MPI"; then
    # mpirun names the process and the signal, and ends the others with SIGTERM: process 0 says so
    grep -q "rank 1 .*signal 9" "$tmp/err" || fail "process 1 killed: the launcher did not name it: $(cat "$tmp/err")"
    grep -q "another process of the job died" "$tmp/err" || fail "process 1 killed: no word from process 0: $(cat "$tmp/err")"
else # MPICH's Hydra names the process by PID and the signal, and ends the others with SIGKILL
    cat "$tmp/out" "$tmp/err" | grep -q "BAD TERMINATION.*\|Killed (signal 9)" \
        || fail "process 1 killed: the launcher did not say so: $(cat "$tmp/out" "$tmp/err")"
fi
intact "process 1 killed"
echo "ok: process 1 of 3 killed: exit $rc, the launcher names it (and under Open MPI, process 0 says the job ended)"

# ---- usage ----
expect_rc 2 "ensemble cannot be spread" "$mpirun" $mflags -np 2 "$mcli" fit --threads 1 $common \
    --weights "$w,$w" --layers "2,3;2" -o "$tmp/e.pcm" "$tmp/three"
echo "test_mpi: all passed"
