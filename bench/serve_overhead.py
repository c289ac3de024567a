"""serve_overhead.py - the HTTP overhead of `patchcore serve` per request, for bench/serve.sh.

usage: serve_overhead.py PORT SERVER_LOG N IMAGE...
Sends N predict requests (the images in turn, raw PNG bodies, formatted once) one after another on one
kept-alive connection with TCP_NODELAY, timing each from the first byte sent to the last byte of the
answer. The server's request log (not --quiet) gives each request's work_ms (decode, predict, JSON on
the worker) and ms (headers in -> answer sent); with one connection the log lines are in the order of
the requests, so each latency is matched with its own work time. Prints the medians and 90th
percentiles of: client latency - work_ms (what the client waits beyond the work: the overhead the
issue's 2 ms target is about), ms - queue_ms - work_ms (inside the server) and client latency - ms
(outside it: loopback and the client). The predict time cancels out request by request, so the figures
hold on a loaded machine where a separate in-process run does not compare.
"""
import re
import socket
import statistics
import sys
import time

port, log, n, paths = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
reqs = []
for p in paths:
    body = open(p, "rb").read()
    reqs.append(b"POST /v1/models/bench/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)


def lines_so_far():
    return sum(1 for _ in open(log))


# requests of an earlier load (wrk stopped with some in flight) are still being logged: wait until the
# log has been still for half a second, so that every line after `skip` is one of ours
skip, still = lines_so_far(), 0
while still < 5:
    time.sleep(0.1)
    now = lines_so_far()
    still = still + 1 if now == skip else 0
    skip = now
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat = []
for i in range(n):
    t = time.perf_counter()
    s.sendall(reqs[i % len(reqs)])
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"serve_overhead: {head[:80]!r}")
    size = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(rest) < size:
        rest += s.recv(65536)
    lat.append((time.perf_counter() - t) * 1e3)
s.close()
deadline = time.time() + 10
while True:  # the log line is written when the request completes, just after the answer
    rows = [tuple(map(float, m.groups())) for m in
            (re.search(r" ms=([\d.]+) queue_ms=([\d.]+) work_ms=([\d.]+) ", l) for l in list(open(log))[skip:]) if m]
    if len(rows) >= n or time.time() > deadline:
        break
    time.sleep(0.05)
if len(rows) != n:
    sys.exit(f"serve_overhead: {len(rows)} log lines for {n} requests")
lat, rows = lat[2:], rows[2:]  # the first requests warm up the worker's predict context


def q(v):
    v = sorted(v)
    return "p50 %.2f ms, p90 %.2f ms" % (statistics.median(v), v[int(0.9 * (len(v) - 1))])


print(f"overhead per request, 1 connection, {len(lat)} requests (work_ms p50 {statistics.median(r[2] for r in rows):.2f}):")
print("  client latency - work_ms:    " + q([l - r[2] for l, r in zip(lat, rows)]))
print("  inside the server:           " + q([r[0] - r[1] - r[2] for r in rows]))
print("  outside (loopback, client):  " + q([l - r[0] for l, r in zip(lat, rows)]))
