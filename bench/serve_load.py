"""A bounded loopback load client for bench/serve.sh: C threads, each with one keep-alive
HTTP/1.1 connection, POST one 32x48x48 i16 crop per request until N requests are done or T
seconds have passed. Prints one JSON line: requests, ok, errors (by status), seconds,
throughput (ok/s), p50/p99 latency in ms.

Usage: serve_load.py HOST:PORT CLIENTS REQUESTS MAX_SECONDS CROP_FILE
Threads, not asyncio: http.client's send/recv release the GIL, and with one crop per request
the client spends far less CPU per request than any of the servers measured.
"""
import http.client
import json
import sys
import threading
import time

addr, clients, total, max_s, crop_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
host, port = addr.rsplit(":", 1)
body = open(crop_file, "rb").read()
headers = {"Content-Type": "application/octet-stream", "X-Shape": "1,32,48,48", "Connection": "keep-alive"}
lock = threading.Lock()
issued = 0
lat, errors = [], {}
deadline = time.monotonic() + max_s


def worker():
    global issued
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    while True:
        with lock:
            if issued >= total or time.monotonic() > deadline:
                break
            issued += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/classify", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            status = r.status
        except Exception as e:  # a reset connection counts as an error and is reopened
            status = type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        dt = time.perf_counter() - t0
        with lock:
            if status == 200:
                lat.append(dt)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
    conn.close()


t0 = time.perf_counter()
ts = [threading.Thread(target=worker) for _ in range(clients)]
for t in ts:
    t.start()
for t in ts:
    t.join()
secs = time.perf_counter() - t0
lat.sort()


def pct(p):
    return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None


print(json.dumps({"clients": clients, "requests": len(lat) + sum(errors.values()), "ok": len(lat), "errors": errors,
                  "seconds": round(secs, 2), "throughput": round(len(lat) / secs, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99)}))
