#!/bin/sh
# test_serve.sh - `patchcore serve` end to end with the real ResNet-18 on MVTec bottle: a tiny model
# (5 train images, coreset 0.1) calibrated on 3 good test images, served on a free loopback port and
# driven by tests/serve_check.py (Python's http.client and raw sockets as the independent client):
#  - every endpoint: /healthz, /readyz, /metrics (the families docs/serve.md lists), /v1/models,
#    /v1/models/NAME (the thresholds `patchcore info` prints), predict raw and multipart;
#  - results identical to `patchcore predict --json --threads 1` (each of the server's 2 workers runs
#    1 thread): the JSON text from "score" to "ms" byte for byte, ?map=npy and ?map=png16 byte for byte
#    with the files of --maps, ?overlay=png with the file of --overlays;
#  - concurrent clients: 12 at once on 2 workers + a queue of 4 get 200 (equal results) or 503 with
#    Retry-After, at least one of each;
#  - reload under load: while a client predicts in a loop, a corrupt model file + SIGHUP leaves the
#    old model serving (reload failure in the log and /metrics), then a different model file + POST
#    /v1/admin/reload swaps it in (generation 2, uncalibrated output); no request of the loop fails;
#  - hostile requests: truncated bodies, a lying Content-Length, a 100 KB header, a slow client (idle
#    timeout while others are served), bad multipart boundaries, non-images, a truncated PNG, unknown
#    models, paths and query parameters, wrong methods, oversized bodies (declared and chunked);
#    the server keeps answering and exits 0 (no crash; under ASan, no leak);
#  - a second server with --token-file, --log-format json and (when openssl is there to make a
#    self-signed certificate) --tls-cert/--tls-key: 401 without the token, 200 with it, /healthz open,
#    every stderr line JSON, all over HTTPS; ?timeout=0.005 stops a running prediction (504) and the
#    next request is served with the CLI's numbers; ?timeout=0.01 behind a busy worker gets 503;
#  - --request-timeout 0.01 gives 504 (the server's own limit), --max-connections 3: a fourth
#    connection is refused while three are open (they keep working), and served once one closes;
#  - two replicas with the same model behind a round-robin client: each answer equals predict --json's
#    line up to "ms" byte for byte (path included, via ?name=); one replica SIGKILLed, the client fails
#    over and the other answers every request;
#  - SIGTERM with requests in flight: they complete with 200, the server exits 0 and says "stopped".
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR, PC_SOURCE_DIR. Exit 77 (skip) without the data,
# weights, python or a CLI built with libmicrohttpd.
set -eu
cli=${PC_CLI:?}
src=${PC_SOURCE_DIR:-$(dirname "$0")/..}
shared=${PC_SHARED_DIR:-/work/shared}
data=$shared/data/mvtec_ad/bottle
weights=$shared/weights/resnet18_in1k_to_layer3.safetensors
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -d "$data/train/good" ] && [ -f "$weights" ] || { echo "SKIP: no bottle data or ResNet-18 weights in $shared"; exit 77; }
[ -x "$py" ] && "$py" -c "import numpy, PIL" 2>/dev/null || { echo "SKIP: $py with numpy and PIL absent"; exit 77; }
if ! "$cli" serve --help >/dev/null 2>&1; then echo "SKIP: patchcore built without libmicrohttpd (no serve verb)"; exit 77; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_serve.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
cd "$tmp"

"$cli" fit --weights "$weights" --coreset 0.1 --no-progress -o raw.pcm "$data"/train/good/00[0-4].png \
    >fit.log 2>&1 || { cat fit.log >&2; fail "fit failed"; }
"$cli" calibrate -m raw.pcm --out cal.pcm --no-progress "$data"/test/good/00[0-2].png >cal.log 2>&1 ||
    { cat cal.log >&2; fail "calibrate failed"; }
cp cal.pcm served.pcm # the file the reload test replaces

good=$data/test/good/004.png
bad=$data/test/broken_large/000.png
# The reference: the CLI on the same images with one thread (what each server worker runs on).
"$cli" predict -m cal.pcm --json --threads 1 --maps maps_npy --overlays ov "$good" "$bad" >ref.jsonl 2>ref.err ||
    { cat ref.err >&2; fail "predict (npy) failed"; }
"$cli" predict -m cal.pcm --json --threads 1 --maps maps_png --map-format png16 "$good" "$bad" >ref_png.jsonl 2>ref_png.err ||
    fail "predict (png16) failed"
"$cli" predict -m cal.pcm --json --threads 1 "$good" "$bad" >ref_plain.jsonl 2>ref_plain.err || fail "predict (plain) failed"
"$cli" predict -m raw.pcm --json --threads 1 "$good" >ref_raw.jsonl 2>ref_raw.err || fail "predict (raw model) failed"
"$cli" info cal.pcm >info.txt || fail "info failed"

# start_server LOG ARGS...: start serve on a free port in the background; sets port and spid.
start_server() {
    log=$1
    shift
    "$cli" serve --listen 127.0.0.1:0 "$@" 2>"$log" &
    spid=$!
    pids="$pids $spid"
    port=""
    for _ in $(seq 1 300); do
        port=$(sed -n 's/.*listening on https*:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$log" | head -n 1)
        [ -n "$port" ] && break
        kill -0 "$spid" 2>/dev/null || { cat "$log" >&2; fail "serve exited at start"; }
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$log" >&2; fail "serve did not start listening"; }
}

start_server serve.log -m bottle=served.pcm -m raw=raw.pcm --threads 2 --workers 2 --queue 4 --max-body 2M \
    --idle-timeout 2 --request-timeout 20 --shutdown-timeout 20
"$py" "$src/tests/serve_check.py" main "$port" "$spid" "$tmp" "$good" "$bad" ||
    { tail -40 serve.log >&2; fail "serve checks failed"; }
kill -0 "$spid" 2>/dev/null || { tail -20 serve.log >&2; fail "the server died"; }

# SIGTERM with requests in flight (the Python side sends them, signals, and checks their answers).
"$py" "$src/tests/serve_check.py" shutdown "$port" "$spid" "$tmp" "$good" "$bad" ||
    { tail -40 serve.log >&2; fail "shutdown checks failed"; }
rc=0
wait "$spid" || rc=$?
[ "$rc" = 0 ] || { tail -40 serve.log >&2; fail "serve exited $rc after SIGTERM"; }
grep -q "stopped" serve.log || fail "no 'stopped' line in the log"
grep -q "reload: model 'bottle' from .* failed, still serving generation 1" serve.log ||
    fail "the failed reload is not logged"
grep -q "POST /v1/models/bottle/predict model=bottle status=200 ms=[0-9.]* queue_ms=[0-9.]* work_ms=[0-9.]* in=" serve.log ||
    fail "no request log line with queue_ms and work_ms"

# Token and JSON logs, over HTTPS when openssl can make a self-signed certificate.
printf 's3cret-token\n' >token
chmod 600 token
tls=""
SERVE_TLS=0
if command -v openssl >/dev/null 2>&1 && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem \
        -days 1 -subj /CN=127.0.0.1 >openssl.log 2>&1; then
    tls="--tls-cert cert.pem --tls-key key.pem"
    SERVE_TLS=1
fi
export SERVE_TLS
# shellcheck disable=SC2086
start_server serve2.log -m cal.pcm --threads 1 --workers 1 --token-file token --log-format json $tls \
    --request-timeout 20 --queue 2
[ "$SERVE_TLS" = 0 ] || grep -q "listening on https://" serve2.log || fail "--tls-cert: not listening on https"
"$py" "$src/tests/serve_check.py" token "$port" "$spid" "$tmp" "$good" "$bad" ||
    { tail -20 serve2.log >&2; fail "token checks failed"; }
kill -TERM "$spid"
rc=0
wait "$spid" || rc=$?
[ "$rc" = 0 ] || { tail -20 serve2.log >&2; fail "serve (token) exited $rc"; }
"$py" -c "
import json, sys
n = work = 0
for line in open('serve2.log'):
    j = json.loads(line); n += 1
    work += j.get('status') == 200 and j.get('work_ms', -1) >= 0 and j.get('queue_ms', -1) >= 0
assert n >= 4 and work >= 1, (n, work)
" || { cat serve2.log >&2; fail "a --log-format json line is not JSON"; }

# --request-timeout bounding predictions (504) and --max-connections (a fourth connection refused while
# three are open, served once one closes).
start_server serve3.log -m cal.pcm --threads 1 --workers 1 --request-timeout 0.01 --max-connections 3
SERVE_TLS=0 "$py" "$src/tests/serve_check.py" limits "$port" "$spid" "$tmp" "$good" "$bad" ||
    { tail -20 serve3.log >&2; fail "limits checks failed"; }
kill -TERM "$spid"
rc=0
wait "$spid" || rc=$?
[ "$rc" = 0 ] || { tail -20 serve3.log >&2; fail "serve (limits) exited $rc"; }
grep -q "connection limit" serve3.log || fail "libmicrohttpd did not log the refused connection"

# Two replicas of the same model behind a round-robin client: every answer is predict's; one replica
# killed, the other answers everything.
start_server rep1.log -m cal.pcm --threads 1 --workers 1
port1=$port spid1=$spid
start_server rep2.log -m cal.pcm --threads 1 --workers 1
SERVE_TLS=0 "$py" "$src/tests/serve_check.py" replicas "$port1,$port" "$spid1,$spid" "$tmp" "$good" "$bad" ||
    { tail -n 20 rep1.log rep2.log >&2; fail "replica checks failed"; }
wait "$spid1" 2>/dev/null || true
kill -TERM "$spid"
rc=0
wait "$spid" || rc=$?
[ "$rc" = 0 ] || { tail -20 rep2.log >&2; fail "serve (replica 2) exited $rc"; }

# Bad command lines and a model that cannot be loaded.
"$cli" serve >/dev/null 2>&1 && fail "serve without -m succeeded"
rc=0; "$cli" serve -m cal.pcm --listen nowhere >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "--listen nowhere: exit $rc, expected 1"
rc=0; "$cli" serve -m 'bad name=cal.pcm' >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "a bad model name: exit $rc, expected 2"
rc=0; "$cli" serve -m missing.pcm --listen 127.0.0.1:0 >missing.out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "missing.pcm" missing.out || fail "a missing model: exit $rc: $(cat missing.out)"
echo "test_serve: ok"
