#!/bin/sh
# Install everything patchcore needs to build, test and benchmark, from Debian's packages only.
# Idempotent: packages already present are left as they are. Uses sudo when not root.
set -eu

PKGS_BUILD="build-essential cmake pkg-config libopenblas-openmp-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev libcmocka-dev libdnnl-dev libmicrohttpd-dev"
# Optional: libFuzzer (`make fuzz`); `clang` and `libclang-rt-dev` are Debian's version-independent
# names (clang 14 and libclang-rt-14-dev on bookworm).
PKGS_FUZZ="clang libclang-rt-dev valgrind"
PKGS_ORACLE="python3 python3-numpy python3-scipy python3-sklearn python3-pil python3-torch python3-torchvision python3-faiss"
# A headless browser for tests/test_report.sh (the HTML reports are opened and checked in it), and
# valgrind for tests/test_valgrind.c (memcheck over fit and predict).
PKGS_BROWSER="chromium valgrind"
# `patchcore serve`'s tests (tests/test_serve.sh: curl as the client) and benchmark (bench/serve.sh: wrk).
PKGS_SERVE="curl wrk"
# The distributed fit (`make MPI=1`, docs/mpi.md; tests/test_mpi.sh runs it under Open MPI's mpirun;
# MPICH for `make mpich-test` and the MPICH compile check of `make mpi-test`).
PKGS_MPI="libopenmpi-dev openmpi-bin libmpich-dev mpich"

case "${1:-all}" in
  build) PKGS="$PKGS_BUILD" ;;
  all)   PKGS="$PKGS_BUILD $PKGS_ORACLE $PKGS_BROWSER $PKGS_SERVE $PKGS_MPI" ;;
  mpi)   PKGS="$PKGS_BUILD $PKGS_MPI" ;;
  fuzz)  PKGS="$PKGS_BUILD $PKGS_FUZZ" ;;
  *) echo "usage: scripts/setup.sh [build|all|fuzz|mpi]" >&2; exit 2 ;;
esac

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

if [ -n "$missing" ]; then
  echo "setup: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "setup: all packages present" >&2
fi
