"""bench/serve_load.sh's client: CLIENTS connections at once, each POSTing a BODY_MB multipart
/v1/detect body ROUNDS times (a header that fails validation, so an admitted body is parsed,
written to the scratch folder and answered 400 without a detection run), while a probe GETs
/healthz every 10 ms on a fresh connection and the server's RSS is sampled from /proc.

Each upload's answer is read by a thread of its own while the body is still being sent: a
server that refuses early (503) answers before the body is through, and a client that only
reads after sending would see the connection reset instead of the answer.

The probe is a process of its own (`serve_load.py probe ADDR`: inside this one it would wait
for the GIL behind 128 upload threads, and measure that), at the default priority; the upload
threads run at nice 10 (Linux sets niceness per thread), so on a machine the clients saturate
the probe measures the server rather than its own wait for a CPU. The probe runs alone for
IDLE seconds first (the machine's own floor, reported beside the load's numbers).

Prints one JSON object: statuses, Retry-After on every 503, /healthz percentiles, peak RSS.
Usage: serve_load.py ADDR SERVER_PID CLIENTS BODY_MB ROUNDS
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time


IDLE = 5.0


def body_of(mb):
    head = b"NDims = 3\nDimSize = 1 1 1\nElementType = MET_SHORT\nElementDataFile = u.raw\n"
    parts = [
        (b"mhd", b"load.mhd", head),
        (b"raw", b"u.raw", b"\0" * (mb * 1000 * 1000)),
    ]
    out = bytearray()
    for name, fn, data in parts:
        out += b'--b0undary\r\nContent-Disposition: form-data; name="' + name + b'"; filename="' + fn + b'"\r\n\r\n'
        out += data + b"\r\n"
    out += b"--b0undary--\r\n"
    return bytes(out)


def upload(addr, body, results):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    got = bytearray()

    def reader():
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    return
                got.extend(b)
        except OSError:
            return

    r = threading.Thread(target=reader)
    r.start()
    head = (
        f"POST /v1/detect HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        s.sendall(head)
        s.sendall(body)  # one call: the GIL is released for the whole send
    except OSError:
        pass  # refused early: the answer is (or was) read by the reader
    # no half-close (SHUT_WR): hyper closes a connection whose client ends its side mid-request
    r.join(timeout=300)
    s.close()
    text = bytes(got).decode("latin-1")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1 ") else 0
    retry = "\r\nretry-after:" in text.split("\r\n\r\n", 1)[0].lower()
    results.append((status, retry))


def probe(addr):
    """Prints `START_TIME LATENCY` per /healthz request, every 10 ms, until killed."""
    host, port = addr.rsplit(":", 1)
    while True:
        start, t = time.time(), time.perf_counter()
        try:
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
            while s.recv(65536):
                pass
            s.close()
            lat = time.perf_counter() - t
        except OSError:
            lat = float("inf")
        print(start, lat, flush=True)
        time.sleep(0.01)


def rss(pid, stop, peak):
    while not stop.is_set():
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        time.sleep(0.02)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


def main():
    if sys.argv[1] == "probe":
        probe(sys.argv[2])
        return
    addr, pid, clients, mb, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    body = body_of(mb)
    stop, peak, results = threading.Event(), [0], []
    prober = subprocess.Popen([sys.executable, __file__, "probe", addr], stdout=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=rss, args=(pid, stop, peak))
    sampler.start()
    time.sleep(IDLE)
    t0 = time.time()

    def client():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        for _ in range(rounds):
            upload(addr, body, results)

    ts = [threading.Thread(target=client) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t1 = time.time()
    wall = t1 - t0
    stop.set()
    sampler.join()
    prober.terminate()
    seen = [tuple(map(float, l.split())) for l in prober.communicate()[0].splitlines() if l.strip()]
    before = [lat for start, lat in seen if start < t0]
    during = [lat for start, lat in seen if t0 <= start <= t1]
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    by = {}
    for st, _ in results:
        by[st] = by.get(st, 0) + 1
    print(json.dumps({
        "requests": len(results),
        "statuses": {str(k): v for k, v in sorted(by.items())},
        "503_with_retry_after": sum(1 for st, r in results if st == 503 and r),
        "body_bytes": len(body),
        "wall_s": round(wall, 1),
        "healthz_n": len(during),
        "healthz_p50_ms": round(pct(during, 50) * 1e3, 2),
        "healthz_p99_ms": round(pct(during, 99) * 1e3, 2),
        "healthz_max_ms": round(max(during) * 1e3, 2) if during else None,
        "healthz_idle_p50_ms": round(pct(before, 50) * 1e3, 2),
        "healthz_idle_p99_ms": round(pct(before, 99) * 1e3, 2),
        "rss_peak_sampled": peak[0],
        "rss_hwm": hwm,
    }))


main()
