#!/bin/sh
# serve.sh - issue 14's benchmark: `patchcore serve` under wrk on loopback against in-process
# `patchcore predict` on the same images, in the same run. The server gets THREADS threads (default 2)
# with its default workers (one per 2 threads, as predict's default jobs); wrk POSTs the images raw,
# cycling through them, with 1, 2, 4 and 8 connections (CONNS) for DURATION seconds each (default 8), and
# reports images/s, p50 and p99 latency and non-200 answers. predict runs on the same images with
# the same threads (default jobs), and its images/s line (decode + predict, wall time) is the
# reference: the server's figure at 1 connection shows the HTTP cost per image, more connections show
# whether queueing keeps the workers busy.
# usage: sh bench/serve.sh [BUILD_DIR]   (after `make`); MODEL=FILE to use a fitted model (default: fit
# one on the bottle training images, ~15 s); IMAGES=N test images (default 16); THREADS, DURATION, CONNS.
# Then bench/serve_overhead.py: OVERHEAD_N (60) requests on one connection, each one's latency minus its
# own work time from the request log: the HTTP overhead, robust to the machine's load.
# SOAK=S: afterwards, load the server with 2 connections for S seconds (e.g. 600) and print its resident
# memory (VmRSS) every S/20 seconds, then the first, last and largest sample: memory must stay flat.
set -eu
build=${1:-build}
threads=${THREADS:-2}
secs=${DURATION:-8}
conns=${CONNS:-1 2 4 8}
n_images=${IMAGES:-16}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$here/../../shared}
bottle=${BOTTLE:-$shared/data/mvtec_ad/bottle}
weights=$shared/weights/resnet18_in1k_to_layer3.safetensors
command -v wrk >/dev/null || { echo "serve.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
for f in "$bottle/test" "$build/patchcore"; do
  test -e "$f" || { echo "serve.sh: $f not found" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/pc_bench_serve_XXXXXX)
spid=""
trap '[ -n "$spid" ] && kill "$spid" 2>/dev/null; rm -rf "$tmp"' EXIT
model=${MODEL:-}
if [ -z "$model" ]; then
  model=$tmp/bottle.pcm
  "$build/patchcore" fit --weights "$weights" --no-progress -o "$model" "$bottle/train/good" >/dev/null 2>&1
fi
find "$bottle/test" -name '*.png' | sort | awk -v n="$n_images" 'NR % 5 == 1 && c < n { print; c++ }' >"$tmp/images"
echo "model $model; $(wc -l <"$tmp/images") test images; threads $threads; $secs s per connection count"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# In-process reference: predict on the same images, same threads, default jobs; each image 3 times so
# that the first image's warm-up (predict contexts, page cache) weighs as little as in the server's
# DURATION seconds. Measured before and after the server runs: on a shared machine the two differ by
# the noise, against which the server's figures must be read.
imgs3="$(cat "$tmp/images" "$tmp/images" "$tmp/images")"
predict_rate() {
  # shellcheck disable=SC2086
  "$build/patchcore" predict -m "$model" --threads "$threads" $imgs3 2>"$tmp/predict.err" >/dev/null
  sed -n 's/.*images in .* s, \([0-9.]*\) images\/s.*/\1/p' "$tmp/predict.err"
}
ref=$(predict_rate)
echo "predict (in process, before): $ref images/s  ($(grep 'images/s' "$tmp/predict.err" | sed 's/.*(//; s/)//'))"

# Not --quiet: the request log's ms (headers in -> answer sent), queue_ms and work_ms (decode, predict,
# JSON on the worker) give the server's own overhead per request, read in the same run as wrk's
# latencies so that the predict time, and the machine's load, cancel out.
"$build/patchcore" serve -m "bench=$model" --listen 127.0.0.1:0 --threads "$threads" 2>"$tmp/serve.log" &
spid=$!
port=""
for _ in $(seq 1 200); do
  port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$tmp/serve.log" | head -n 1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/serve.log" >&2; exit 1; }
grep "listening" "$tmp/serve.log" | sed 's/^[^ ]* info /server: /'

# wrk: each request POSTs the next image (raw body). The requests are formatted once, in init: building a
# 500 KB request string per call in wrk's Lua costs about a millisecond, which would count as latency.
{
  echo 'local bodies, reqs = {}, {}'
  while read -r f; do echo "do local h = io.open(\"$f\", \"rb\"); bodies[#bodies + 1] = h:read(\"*a\"); h:close() end"; done <"$tmp/images"
  cat <<'EOF'
local i = 0
init = function(args)
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "/v1/models/bench/predict", {["Content-Type"] = "image/png"}, b)
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
EOF
} >"$tmp/post.lua"

# Per connection count, from the request log lines of its run: work_p50 (median work_ms), srv_over
# (median of ms - queue_ms - work_ms: receiving the body, hand-off to the worker and back, sending the
# answer) and e2e_over (wrk's p50 - work_p50: what a client waits beyond the work, at 1 connection;
# at more connections the queue wait is in it too).
printf '%-6s %10s %10s %10s %8s %12s %10s %10s %10s\n' conns images/s p50_ms p99_ms non200 vs_before work_p50 srv_over e2e_over
for c in $conns; do
  before=$(wc -l <"$tmp/serve.log")
  wrk -t 1 -c "$c" -d "${secs}s" --timeout 60s --latency -s "$tmp/post.lua" "http://127.0.0.1:$port" >"$tmp/wrk.$c" 2>&1
  tail -n +"$((before + 1))" "$tmp/serve.log" | grep ' status=200 ' | sed 's/.* ms=\([0-9.]*\) queue_ms=\([0-9.]*\) work_ms=\([0-9.]*\) .*/\1 \2 \3/' >"$tmp/log.$c"
  med() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  work=$(awk '{ print $3 }' "$tmp/log.$c" | med)
  srv=$(awk '{ print $1 - $2 - $3 }' "$tmp/log.$c" | med)
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.$c")
  ms() { awk -v q="$1" '$1 == q { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.1f", v }' "$tmp/wrk.$c"; }
  non=$(awk '/Non-2xx/ { print $NF }' "$tmp/wrk.$c")
  p50=$(ms 50%)
  printf '%-6s %10s %10s %10s %8s %12s %10s %10s %10s\n' "$c" "$rps" "$p50" "$(ms 99%)" "${non:-0}" \
    "$(awk -v a="$rps" -v b="$ref" 'BEGIN { if (b > 0) printf "%.2fx", a / b }')" "$work" "$srv" \
    "$(awk -v a="$p50" -v b="$work" 'BEGIN { printf "%.2f", a - b }')"
done
# The overhead per request, each latency matched with its own work_ms (bench/serve_overhead.py).
/usr/bin/python3 "$here/serve_overhead.py" "$port" "$tmp/serve.log" "${OVERHEAD_N:-60}" $(cat "$tmp/images") ||
  echo "serve_overhead.py failed"
if [ -n "${SOAK:-}" ]; then
  step=$((SOAK / 20)); [ "$step" -ge 1 ] || step=1
  wrk -t 1 -c 2 -d "${SOAK}s" --timeout 60s --latency -s "$tmp/post.lua" "http://127.0.0.1:$port" >"$tmp/wrk.soak" 2>&1 &
  wpid=$!
  : >"$tmp/rss"
  t=0
  while kill -0 "$wpid" 2>/dev/null; do
    r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$spid/status")
    echo "$t $r" >>"$tmp/rss"
    sleep "$step"; t=$((t + step))
  done
  wait "$wpid" || true
  echo "soak: ${SOAK} s at 2 connections: $(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.soak") images/s," \
    "non-200: $(awk '/Non-2xx/ { print $NF }' "$tmp/wrk.soak" | grep . || echo 0)"
  echo "soak: server VmRSS by time: $(awk '{ printf "%s%d s %d kB", (NR > 1 ? ", " : ""), $1, $2 }' "$tmp/rss")"
  awk 'NR == 1 { f = $2 } { l = $2; if ($2 > m) m = $2 } END { printf "soak: VmRSS first %d kB, last %d kB, largest %d kB (last/first %.3f)\n", f, l, m, l / f }' "$tmp/rss"
fi
kill "$spid" && wait "$spid" 2>/dev/null || true
spid=""
echo "predict (in process, after): $(predict_rate) images/s"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
