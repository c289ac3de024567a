"""The client side of tests/test_serve.sh: HTTP requests to a running `patchcore serve` with Python's
http.client and raw sockets (an HTTP client independent of the server's libmicrohttpd).

usage: serve_check.py main|shutdown|token|limits PORT PID TMPDIR GOOD_PNG BAD_PNG
       serve_check.py replicas PORT1,PORT2 PID1,PID2 TMPDIR GOOD_PNG BAD_PNG
TMPDIR holds the test's files: ref.jsonl, ref_plain.jsonl (without --maps/--overlays), ref_png.jsonl, ref_raw.jsonl (predict --json, one thread),
maps_npy/, maps_png/, ov/ (predict --maps/--overlays), info.txt, served.pcm, raw.pcm.
Exits 1 with a message on the first failure.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import threading
import time

PORTS = [int(p) for p in sys.argv[2].split(",")]  # "replicas" takes PORT1,PORT2 and PID1,PID2
PIDS = [int(p) for p in sys.argv[3].split(",")]
PORT, PID = PORTS[0], PIDS[0]
TMP = sys.argv[4]
GOOD, BAD = sys.argv[5], sys.argv[6]


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)  # without waiting for client threads still running


TLS = os.environ.get("SERVE_TLS") == "1"  # the token server also runs HTTPS when openssl made a cert


def request(method, path, body=None, headers=None, timeout=60):
    if TLS:
        ctx = ssl.create_default_context(cafile=os.path.join(TMP, "cert.pem"))
        ctx.check_hostname = False
        c = http.client.HTTPSConnection("127.0.0.1", PORT, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def expect(status, path, method="GET", body=None, headers=None, want_in=None):
    st, h, data = request(method, path, body, headers)
    if st != status:
        fail(f"{method} {path}: {st}, expected {status}: {data[:300]!r}")
    if status >= 400 and status != 431 and h.get("content-type") == "application/json":
        j = json.loads(data)
        if j.get("status") != status or not j.get("error"):
            fail(f"{method} {path}: error body {data!r}")
    if want_in and want_in.encode() not in data:
        fail(f"{method} {path}: {want_in!r} not in {data[:300]!r}")
    return h, data


def read(path):
    with open(path, "rb") as f:
        return f.read()


def raw_predict(model, img, query=""):
    return request("POST", f"/v1/models/{model}/predict{query}", img, {"Content-Type": "image/png"})


def multipart(fields, boundary="xYzBoundary42"):
    """fields: (name, filename or None, bytes)."""
    out = b""
    for name, fn, data in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{fn}"' if fn else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if fn:
            out += b"Content-Type: image/png\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def core(line):
    """The text from "score" to just before "ms": everything predict and the server must agree on (the
    file names of predict --maps/--overlays left out)."""
    m = re.search(r'("score": .*), "ms": ', line)
    if not m:
        fail(f"no score..ms in {line!r}")
    return re.sub(r', "(map|overlay)": "[^"]*"', "", m.group(1))


def refs(name):
    return [json.loads(l) | {"_line": l} for l in open(os.path.join(TMP, name))]


def raw_socket(payload, read_timeout=10, shut=False):
    """Send bytes on a fresh connection; return what comes back until the server closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=read_timeout)
    s.sendall(payload)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return out


def check_main():
    good, bad = read(GOOD), read(BAD)
    ref = refs("ref.jsonl")
    ref_png = refs("ref_png.jsonl")
    ref_raw = refs("ref_raw.jsonl")

    # --- the plain endpoints
    expect(200, "/healthz", want_in='"ok"')
    expect(200, "/readyz", want_in='"ready"')
    h, data = expect(200, "/v1/models")
    models = json.loads(data)["models"]
    if [m["name"] for m in models] != ["bottle", "raw"]:
        fail(f"/v1/models: {models}")
    h, data = expect(200, "/v1/models/bottle")
    info = json.loads(data)
    txt = open(os.path.join(TMP, "info.txt")).read()
    t = re.search(r"thresholds: +image ([^,]+), pixel ([^,]+), scale ([^,]+), pixel scale (\S+)", txt)
    for key, val in zip(("image_threshold", "pixel_threshold", "score_scale", "pixel_scale"), t.groups()):
        if "%.6g" % info[key] != val:
            fail(f"/v1/models/bottle {key} {info[key]} vs info's {val}")
    if info["backbone"] != "resnet18" or info["layers"] != [2, 3] or info["crop"] != 224 or info["generation"] != 1:
        fail(f"/v1/models/bottle: {info}")
    if json.loads(request("GET", "/v1/models/raw")[2])["calibrated"] is not False:
        fail("raw model reported calibrated")
    expect(200, "/v1/models/bottle", method="HEAD")

    # --- predict: raw and multipart, equal to the CLI's numbers
    for img, r in ((good, ref[0]), (bad, ref[1])):
        st, h, data = raw_predict("bottle", img)
        if st != 200 or h.get("content-type") != "application/json":
            fail(f"raw predict: {st} {data[:200]!r}")
        if core(data.decode()) != core(r["_line"]):
            fail(f"raw predict differs from the CLI:\n  {core(data.decode())}\n  {core(r['_line'])}")
        j = json.loads(data)
        if j["path"] != "-" or j["model"] != "bottle" or j["generation"] != 1:
            fail(f"raw predict fields: {j}")
        body, ct = multipart([("note", None, b"hello"), ("image", "part.png", img)])
        st, h, data = request("POST", "/v1/models/bottle/predict", body, {"Content-Type": ct})
        if st != 200 or core(data.decode()) != core(r["_line"]) or json.loads(data)["path"] != "part.png":
            fail(f"multipart predict: {st} {data[:300]!r}")
    if ref[1]["n_regions"] < 1 or not ref[1]["anomalous"]:
        fail(f"the broken_large reference is not anomalous: {ref[1]}")
    st, h, data = raw_predict("raw", good, "?name=lbl.png")
    if st != 200 or core(data.decode()) != core(ref_raw[0]["_line"]) or json.loads(data)["path"] != "lbl.png":
        fail(f"raw-model predict: {data[:300]!r}")

    # --- maps and overlays, byte for byte with predict's files
    st, h, data = raw_predict("bottle", bad, "?map=npy&overlay=png")
    j = json.loads(data)
    npy_file = read(os.path.join(TMP, "maps_npy", os.listdir(os.path.join(TMP, "maps_npy"))[0]))
    names = sorted(os.listdir(os.path.join(TMP, "maps_npy")))
    want_npy = read(os.path.join(TMP, "maps_npy", [n for n in names if "broken_large" in n][0]))
    want_ov = read(os.path.join(TMP, "ov", [n for n in sorted(os.listdir(os.path.join(TMP, "ov"))) if "broken_large" in n][0]))
    if j["map_format"] != "npy" or base64.b64decode(j["map_base64"]) != want_npy:
        fail("?map=npy differs from predict --maps")
    if base64.b64decode(j["overlay_base64"]) != want_ov:
        fail("?overlay=png differs from predict --overlays")
    st, h, data = raw_predict("bottle", bad, "?map=png16")
    j = json.loads(data)
    want_png = read(os.path.join(TMP, "maps_png", [n for n in sorted(os.listdir(os.path.join(TMP, "maps_png"))) if "broken_large" in n][0]))
    if j["map_format"] != "png16" or base64.b64decode(j["map_base64"]) != want_png:
        fail("?map=png16 differs from predict --maps --map-format png16")
    if abs(j["map_full_scale"] - 2 * info["pixel_threshold"]) > 1e-6 * info["pixel_threshold"]:
        fail(f"map_full_scale {j['map_full_scale']}")
    del npy_file
    expect(422, "/v1/models/raw/predict?map=png16", "POST", good, {"Content-Type": "image/png"}, "pixel threshold")
    expect(422, "/v1/models/raw/predict?overlay=png", "POST", good, {"Content-Type": "image/png"}, "pixel threshold")

    # --- malformed requests: 4xx JSON naming the problem
    png_hdr = {"Content-Type": "image/png"}
    expect(404, "/nope")
    expect(404, "/v1/models/nope", want_in="no model named 'nope'")
    expect(404, "/v1/models/nope/predict", "POST", good, png_hdr)
    expect(404, "/v1/models/../../etc/passwd/predict", "POST", good, png_hdr)
    expect(404, "/v1/models/bottle/predict/x", "POST", good, png_hdr)
    expect(404, "/v1/models/%2e%2e/predict", "POST", good, png_hdr)
    h, _ = expect(405, "/v1/models/bottle/predict", "GET")
    if h.get("allow") != "POST":
        fail(f"405 without Allow: POST: {h}")
    expect(405, "/healthz", "DELETE")
    expect(400, "/v1/models/bottle/predict?map=tiff", "POST", good, png_hdr, "map=")
    expect(400, "/v1/models/bottle/predict?file=/etc/passwd", "POST", good, png_hdr, "unknown query parameter")
    expect(400, "/v1/models/bottle/predict", "POST", b"", png_hdr, "no image")
    expect(415, "/v1/models/bottle/predict", "POST", b"GIF89a" + b"\0" * 100, png_hdr)
    expect(422, "/v1/models/bottle/predict", "POST", b"hello, not an image", png_hdr, "not a PNG or JPEG")
    expect(422, "/v1/models/bottle/predict", "POST", good[: len(good) // 2], png_hdr)  # truncated PNG
    expect(422, "/v1/models/bottle/predict", "POST", good[:40], png_hdr)
    expect(415, "/v1/models/bottle/predict", "POST", b"a=b", {"Content-Type": "application/x-www-form-urlencoded"})
    body, ct = multipart([("image", "x.png", good)])
    expect(400, "/v1/models/bottle/predict", "POST", body, {"Content-Type": "multipart/form-data"}, "boundary")
    expect(400, "/v1/models/bottle/predict", "POST", body, {"Content-Type": "multipart/form-data; boundary=other"},
           "does not occur")
    expect(400, "/v1/models/bottle/predict", "POST", body[:-30], {"Content-Type": ct}, "multipart")
    expect(400, "/v1/models/bottle/predict", "POST", body, {"Content-Type": "multipart/form-data; boundary=" + "b" * 80})
    expect(400, "/v1/models/bottle/predict", "POST", b"--xYzBoundary42--\r\n", {"Content-Type": ct})
    # over --max-body (2M): declared, then chunked without a length
    # (a declared size over the limit is answered on the headers alone, as curl's Expect: 100-continue wants)
    out = raw_socket(b"POST /v1/models/bottle/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 3145728\r\n\r\n", read_timeout=5)
    if not out.startswith(b"HTTP/1.1 413") or b"--max-body" not in out:
        fail(f"declared 3 MB body: {out[:200]!r}")
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    c.putrequest("POST", "/v1/models/bottle/predict")
    c.putheader("Content-Type", "image/png")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for _ in range(3):
        chunk = b"\0" * (1 << 20)
        c.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    if r.status != 413:
        fail(f"chunked 3 MB body: {r.status}")
    r.read()
    c.close()

    # --- hostile connections: the server must survive each and keep answering
    out = raw_socket(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    if not re.match(rb"HTTP/1\.[01] 4(31|13|00)", out):
        fail(f"100 KB header: {out[:100]!r}")
    # a lying Content-Length, larger than the body: the server waits, the client gives up
    raw_socket(b"POST /v1/models/bottle/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
               b"Content-Length: 100000\r\n\r\n" + good[:1000], read_timeout=0.5, shut=True)
    # smaller than the body: the first request gets its answer, the rest is a bad next request
    out = raw_socket(b"POST /v1/models/bottle/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 10\r\n\r\n" + good[:200], read_timeout=5)
    if not out.startswith(b"HTTP/1.1 422") and not out.startswith(b"HTTP/1.1 415"):
        fail(f"short Content-Length: {out[:100]!r}")
    out = raw_socket(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", read_timeout=3)
    out = raw_socket(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", read_timeout=3)
    out = raw_socket(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", read_timeout=3)
    out = raw_socket(b"GET /healthz\r\n\r\n", read_timeout=3)
    # a slow client: half a request line, then nothing; the idle timeout (2 s) closes it while others
    # are served
    slow = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    slow.sendall(b"POST /v1/models/bottle/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    t0 = time.time()
    expect(200, "/healthz")
    st, _, _ = raw_predict("bottle", good)
    if st != 200:
        fail(f"predict while a slow client is connected: {st}")
    try:
        got = slow.recv(100)
    except socket.timeout:
        fail("the idle timeout did not close a stalled connection within 10 s")
    if time.time() - t0 > 8:
        fail(f"stalled connection closed after {time.time() - t0:.1f} s (idle timeout 2 s)")
    slow.close()
    del got

    # --- concurrent clients: 2 workers, queue 4; 12 at once
    results = [None] * 12

    def one(i):
        results[i] = raw_predict("bottle", bad)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n200 = n503 = 0
    for st, h, data in results:
        if st == 200:
            n200 += 1
            if core(data.decode()) != core(ref[1]["_line"]):
                fail("a concurrent result differs from the CLI's")
        elif st == 503:
            n503 += 1
            if h.get("retry-after") != "1" or b"queue is full" not in data:
                fail(f"503 without Retry-After or reason: {h} {data!r}")
        else:
            fail(f"concurrent predict: {st} {data[:200]!r}")
    if n200 < 6 or n503 < 1:
        fail(f"12 concurrent requests on 2 workers + queue 4: {n200} x 200, {n503} x 503")

    # --- reload under load
    stop = threading.Event()
    seen = []

    def loop():
        while not stop.is_set():
            st, h, data = raw_predict("bottle", good)
            seen.append((st, data))

    lt = threading.Thread(target=loop, daemon=True)
    lt.start()
    time.sleep(0.3)
    served = os.path.join(TMP, "served.pcm")
    with open(served + ".tmp", "wb") as f:
        f.write(b"PCMODEL\0 this is not a model file")
    os.replace(served + ".tmp", served)
    os.kill(PID, signal.SIGHUP)
    deadline = time.time() + 20
    while time.time() < deadline:
        m = request("GET", "/metrics")[2].decode()
        if 'patchcore_model_reloads_total{model="bottle",result="error"} 1' in m:
            break
        time.sleep(0.1)
    else:
        fail("the failed reload is not in /metrics")
    if 'patchcore_model_reload_failing{model="bottle"} 1' not in m or 'patchcore_model_generation{model="bottle"} 1' not in m:
        fail("after a failed reload: " + "\n".join(l for l in m.splitlines() if "model_" in l))
    st, h, data = raw_predict("bottle", good)
    if st != 200 or core(data.decode()) != core(ref[0]["_line"]):
        fail(f"the old model does not serve after a failed reload: {st} {data[:200]!r}")
    j = json.loads(request("GET", "/v1/models/bottle")[2])
    if j["reloads_failed"] != 1 or not j["last_reload_error"]:
        fail(f"/v1/models/bottle after a failed reload: {j}")
    shutil.copyfile(os.path.join(TMP, "raw.pcm"), served + ".tmp")
    os.replace(served + ".tmp", served)
    st, h, data = request("POST", "/v1/admin/reload")
    rj = json.loads(data)
    # bottle: 1 -> (failed) -> 2; raw: 1 -> 2 (SIGHUP) -> 3
    if st != 200 or rj["failed"] != 0 or [m["generation"] for m in rj["models"]] != [2, 3]:
        fail(f"POST /v1/admin/reload: {st} {data!r}")
    time.sleep(0.5)
    stop.set()
    lt.join()
    if not seen or any(st != 200 for st, _ in seen):
        fail(f"requests failed during reloads: {[st for st, _ in seen]}")
    gens = [json.loads(d)["generation"] for _, d in seen]
    if gens[0] != 1 or gens != sorted(gens):
        fail(f"generations during the reload: {gens}")
    st, h, data = raw_predict("bottle", good)
    j = json.loads(data)
    if j["generation"] != 2 or "normalized" in j or core(data.decode()) != core(ref_raw[0]["_line"]):
        fail(f"after reloading raw.pcm as 'bottle': {data[:300]!r}")

    # --- metrics: the families, and the counts add up
    m = request("GET", "/metrics")[2].decode()
    for fam in ("patchcore_requests_total", "patchcore_request_duration_seconds_bucket", "patchcore_queue_depth",
                "patchcore_inflight_predictions", "patchcore_inflight_requests", "patchcore_model_load_seconds",
                "patchcore_model_reloads_total", "patchcore_workers 2", "patchcore_queue_capacity 4"):
        if fam not in m:
            fail(f"/metrics lacks {fam}")
    n = sum(int(v) for v in re.findall(r'patchcore_requests_total\{model="bottle",code="200"\} (\d+)', m))
    if n < 10:
        fail(f"/metrics counts {n} bottle 200s")
    expect(200, "/healthz")


def check_shutdown():
    """Three predicts in flight, then SIGTERM: all three answered 200."""
    good = read(GOOD)
    results = [None] * 3

    def one(i):
        try:
            results[i] = raw_predict("bottle", good)[0]
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.15)
    os.kill(PID, signal.SIGTERM)
    for t in ts:
        t.join()
    if results != [200, 200, 200]:
        fail(f"requests in flight at SIGTERM: {results}")


def check_token():
    """--token-file (and, with SERVE_TLS=1, HTTPS with the test's self-signed cert.pem)."""
    tok = {"Authorization": "Bearer s3cret-token"}
    good = read(GOOD)
    expect(200, "/healthz")
    expect(200, "/readyz")
    expect(401, "/v1/models")
    expect(401, "/metrics")
    expect(401, "/v1/models", headers={"Authorization": "Bearer s3cret-tokeN"})
    expect(401, "/v1/models", headers={"Authorization": "Bearer s3cret-token-longer"})
    expect(401, "/v1/models/cal/predict", "POST", good, {"Content-Type": "image/png"})
    expect(200, "/v1/models", headers=tok)
    expect(200, "/metrics", headers=tok)
    st, h, data = request("POST", "/v1/models/cal/predict", good, {"Content-Type": "image/png"} | tok)
    if st != 200:
        fail(f"predict with the token: {st} {data!r}")
    st, h, data = request("POST", "/v1/admin/reload", b"", tok)
    if st != 200:
        fail(f"reload with the token: {st} {data!r}")
    expect(401, "/v1/admin/reload", "POST", b"")
    expect(400, "/v1/models/cal/predict?timeout=abc", "POST", good, {"Content-Type": "image/png"} | tok,
           want_in="timeout=")
    expect(400, "/v1/models/cal/predict?timeout=0", "POST", good, {"Content-Type": "image/png"} | tok)
    ref = refs("ref.jsonl")

    # ?timeout=S below the time a prediction takes (decoding alone takes longer than 5 ms): the worker
    # stops it at its next stage check and the answer is 504 naming the limit (503 if the request
    # happened to wait 5 ms for the idle worker: then try again).
    got504 = None
    for _ in range(20):
        st, h, data = request("POST", "/v1/models/cal/predict?timeout=0.005", good, {"Content-Type": "image/png"} | tok)
        if st not in (503, 504) or json.loads(data)["status"] != st or b"request timeout of 0.005 s" not in data:
            fail(f"?timeout=0.005: {st} {data!r}")
        if st == 504:
            got504 = data
            break
    if not got504 or (b"did not finish" not in got504 and b"before a worker started" not in got504):
        fail(f"?timeout=0.005 never gave 504: {data!r}")
    # ... and the worker is free again: the next request is served, with the CLI's numbers
    st, h, data = request("POST", "/v1/models/cal/predict", good, {"Content-Type": "image/png"} | tok)
    if st != 200 or core(data.decode()) != core(ref[0]["_line"]):
        fail(f"predict after a 504: {st} {data[:300]!r}")

    # The wait in the queue is bounded too: with the one worker busy on A (seen in /metrics), B with
    # ?timeout=0.01 gets 503 "no worker free". Should A end between the check and B's arrival, B runs
    # and gets 504 instead; then the round is repeated.
    def inflight():
        m = request("GET", "/metrics", headers=tok)[2].decode()
        return int(re.search(r"^patchcore_inflight_predictions (\d+)", m, re.M).group(1))

    got503 = False
    for _ in range(10):
        res = {}
        ta = threading.Thread(target=lambda: res.setdefault("a", request(
            "POST", "/v1/models/cal/predict?map=npy&overlay=png", good, {"Content-Type": "image/png"} | tok)))
        ta.start()
        deadline = time.time() + 30
        while inflight() == 0 and time.time() < deadline and ta.is_alive():
            pass
        st, h, data = request("POST", "/v1/models/cal/predict?timeout=0.01", good, {"Content-Type": "image/png"} | tok)
        ta.join()
        if res["a"][0] != 200 or core(res["a"][2].decode()) != core(ref[0]["_line"]):
            fail(f"request A: {res['a'][0]} {res['a'][2][:200]!r}")
        if st == 503:
            if h.get("retry-after") != "1" or b"no worker free within the request timeout of 0.01 s" not in data:
                fail(f"queue timeout: {h} {data!r}")
            got503 = True
            break
        if st != 504:
            fail(f"request B (?timeout=0.01 behind a busy worker): {st} {data!r}")
    if not got503:
        fail("a request queued behind a busy worker never timed out in the queue")


def check_limits():
    """A server with --max-connections 3, --request-timeout 0.01, one worker: the server's own limit
    stops predictions (504, or 503 when the worker was not free within it) and the server goes on;
    a fourth connection is refused while three are open, and accepted once one of them closes."""
    good = read(GOOD)
    got504 = False
    for _ in range(20):
        st, h, data = raw_predict("cal", good)
        if st not in (503, 504) or b"request timeout of 0.01 s" not in data:
            fail(f"--request-timeout 0.01: {st} {data!r}")
        if st == 504:
            got504 = True
            break
    if not got504:
        fail("--request-timeout 0.01 never gave 504")

    def keepalive():
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        c.request("GET", "/healthz")
        r = c.getresponse()
        if r.status != 200 or r.read() != b'{"status": "ok"}\n':
            fail("/healthz on a kept-alive connection")
        return c

    def refused():
        """A new connection gets no answer: closed or reset by the server without a response."""
        try:
            out = raw_socket(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=20)
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError):
            return True
        return out == b""

    # MHD counts a connection until its thread has closed it: wait for the count to settle (poll, no
    # fixed sleep) before taking the three allowed ones.
    conns = None
    for _ in range(100):
        try:
            conns = [keepalive() for _ in range(3)]
            break
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
            for c in conns or []:
                c.close()
            conns = None
            time.sleep(0.05)
    if conns is None:
        fail("three connections were never accepted at once")
    for attempt in range(3):
        if not refused():
            fail("a fourth connection was served while --max-connections 3 were open")
    for c in conns:  # the three still work
        c.request("GET", "/healthz")
        r = c.getresponse()
        if r.status != 200:
            fail(f"an allowed connection failed: {r.status}")
        r.read()
    conns[0].close()
    deadline = time.time() + 20
    while True:  # the server recovers: a new connection is served once one of the three closed
        try:
            st, h, data = request("GET", "/healthz", timeout=5)
            if st == 200:
                break
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
            pass
        if time.time() > deadline:
            fail("no new connection served after one of three closed")
        time.sleep(0.05)
    for c in conns[1:]:
        c.close()


def check_replicas():
    """Two replicas of the same model behind a round-robin client that fails over: every answer is
    `predict --json`'s line for the image up to "ms" byte for byte (the path given back as ?name=);
    after one replica is killed (SIGKILL, as a crash), every request is still answered, by the other."""
    import urllib.parse

    imgs = [(GOOD, read(GOOD)), (BAD, read(BAD))]
    ref = {r["path"]: r["_line"] for r in refs("ref_plain.jsonl")}
    served_by = []
    nxt = [0]

    def rr_predict(path, img):
        """Round robin over the replicas; a connection error moves on to the next one."""
        errors = []
        for _ in range(len(PORTS)):
            port = PORTS[nxt[0] % len(PORTS)]
            nxt[0] += 1
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                c.request("POST", "/v1/models/cal/predict?name=" + urllib.parse.quote(path, safe=""), img,
                          {"Content-Type": "image/png"})
                r = c.getresponse()
                data = r.read()
                c.close()
            except OSError as e:  # refused, reset: this replica is down, try the next
                errors.append(f"{port}: {e!r}")
                continue
            if r.status == 503:  # shed: another replica may take it
                errors.append(f"{port}: 503")
                continue
            served_by.append(port)
            return r.status, data
        fail(f"no replica answered: {errors}")

    def check(n):
        for i in range(n):
            path, img = imgs[i % 2]
            st, data = rr_predict(path, img)
            want = ref[path]
            if st != 200:
                fail(f"replica answer {st}: {data[:300]!r}")
            got = data.decode()
            if got.split(', "ms": ')[0] != want.split(', "ms": ')[0]:
                fail(f"a replica's answer differs from predict --json:\n  {got}\n  {want}")

    check(8)
    if sorted(set(served_by)) != sorted(PORTS) or served_by.count(PORTS[0]) != 4:
        fail(f"round robin: answers by {served_by}")
    os.kill(PIDS[0], signal.SIGKILL)
    deadline = time.time() + 20
    while True:  # wait until the kernel refuses connections on the dead replica's port
        try:
            socket.create_connection(("127.0.0.1", PORTS[0]), timeout=2).close()
        except OSError:
            break
        if time.time() > deadline:
            fail("the killed replica still accepts connections")
        time.sleep(0.05)
    served_by.clear()
    check(6)
    if set(served_by) != {PORTS[1]} or len(served_by) != 6:
        fail(f"after the kill: answers by {served_by}")


{"main": check_main, "shutdown": check_shutdown, "token": check_token, "limits": check_limits, "replicas": check_replicas}[sys.argv[1]]()
