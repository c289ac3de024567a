#!/bin/sh
# test_python.sh - the Python binding (python/patchcore, ctypes) by tests/python/test_binding.py, run
# with /usr/bin/python3 twice: against the build tree (PATCHCORE_LIBRARY=the built libpatchcore.so.0,
# package from the source tree), then against a `cmake --install` into a temporary DESTDIR (package
# imported from the installed site directory, library found through the _paths.py written at install
# time). The oracles and tolerances are listed at the top of test_binding.py.
# Environment (set by CTest): PC_BUILD_DIR, PC_SOURCE_DIR, PC_SHARED_DIR, PC_REF_DIR, PC_CLI,
# PC_INSTALL_PREFIX, CC. Exit 77 (skipped) without /usr/bin/python3 + numpy, or without the bottle data
# and the ResNet-18 weights (after the checks that need neither).
set -eu
build=${PC_BUILD_DIR:?}
src=${PC_SOURCE_DIR:?}
prefix=${PC_INSTALL_PREFIX:-/usr/local}
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x $py ] || { echo "SKIP: $py absent"; exit 77; }
$py -c 'import numpy, PIL, scipy' 2>/dev/null || { echo "SKIP: $py lacks numpy, PIL or scipy"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_python.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
# A sanitizer build's library needs the sanitizer runtimes loaded first into the (uninstrumented)
# interpreter; Python's own allocations are not ours to leak-check.
if grep -q '^PC_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
    LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
    ASAN_OPTIONS=detect_leaks=0
    export LD_PRELOAD ASAN_OPTIONS
fi
export PYTHONDONTWRITEBYTECODE=1

lib=$build/libpatchcore.so.0
[ -e "$lib" ] || fail "$lib not built"
mkdir "$tmp/work"
rc=0
PATCHCORE_LIBRARY=$lib PYTHONPATH="$src/python" $py "$src/tests/python/test_binding.py" build "$tmp/work" || rc=$?
[ $rc = 0 ] || [ $rc = 77 ] || fail "test_binding.py (build tree) failed"

# --- the installed tree ---
DESTDIR="$tmp/root" cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
init=$(find "$tmp/root" -path '*/patchcore/__init__.py' | head -n 1)
[ -n "$init" ] || fail "the Python package was not installed"
site=$(dirname "$(dirname "$init")")
echo "installed package: ${site#$tmp/root}/patchcore"
# The site directory chosen automatically for the prefix is one the system's python3 searches.
if $py -c 'import sys; sys.exit(0 if sys.argv[1] in sys.path else 1)' "${site#$tmp/root}"; then
    echo "${site#$tmp/root} is on $py's sys.path"
elif grep -q '^PC_PYTHON_DIR:STRING=$' "$build/CMakeCache.txt"; then
    fail "the automatic site directory ${site#$tmp/root} is not on $py's sys.path"
else
    echo "note: ${site#$tmp/root} (PC_PYTHON_DIR) is not on $py's sys.path"
fi
rc2=0
env -u PATCHCORE_LIBRARY PYTHONPATH="$site" PC_INSTALL_ROOT="$tmp/root" \
    $py "$src/tests/python/test_binding.py" installed "$tmp/work" || rc2=$?
[ $rc2 = 0 ] || [ $rc2 = 77 ] || fail "test_binding.py (installed) failed"
[ $rc = 0 ] || exit $rc
echo "python OK"
