#!/bin/sh
# Run every reference generator tests/ref/gen_*.py whose output is missing or older than the script or
# than a module the generators share (tests/ref/*.py that are not gen_*.py: common.py, patchcore_torch.py).
# Each script is called as: $PYTHON tests/ref/gen_NAME.py OUTDIR/NAME, and must write only there.
set -eu
out=${1:-build/ref}
PYTHON=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"
for script in tests/ref/gen_*.py; do
  [ -e "$script" ] || continue
  name=$(basename "$script" .py); name=${name#gen_}
  stamp="$out/$name.stamp"
  fresh=1
  if [ -f "$stamp" ] && [ "$stamp" -nt "$script" ]; then
    for dep in tests/ref/*.py; do
      case $(basename "$dep") in gen_*) continue ;; esac
      [ "$stamp" -nt "$dep" ] || fresh=0
    done
  else
    fresh=0
  fi
  [ $fresh = 1 ] && continue
  echo "refs: $name" >&2
  rm -rf "$out/$name"; mkdir -p "$out/$name"
  OMP_NUM_THREADS=2 "$PYTHON" "$script" "$out/$name"
  touch "$stamp"
done
