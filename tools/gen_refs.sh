#!/bin/sh
# Run every reference generator tests/ref/gen_*.py whose output is missing or older than the script.
# Each script is called as: $PYTHON tests/ref/gen_NAME.py OUTDIR/NAME, and must write only there.
set -eu
out=${1:-build/ref}
PYTHON=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"
for script in tests/ref/gen_*.py; do
  [ -e "$script" ] || continue
  name=$(basename "$script" .py); name=${name#gen_}
  stamp="$out/$name.stamp"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$script" ] && [ "$stamp" -nt tests/ref/common.py ]; then
    continue
  fi
  echo "refs: $name" >&2
  rm -rf "$out/$name"; mkdir -p "$out/$name"
  OMP_NUM_THREADS=2 "$PYTHON" "$script" "$out/$name"
  touch "$stamp"
done
