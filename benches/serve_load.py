#!/usr/bin/env python3
"""Bounded load test of `chatterbox-ort serve` on loopback (standard library only).

Starts the server on a free port (or uses --url), sends --requests speech requests from
--clients concurrent clients, each request streamed (`stream_format: "audio"`) so the
time to first audio is seen, and reports throughput, latency and time-to-first-audio
percentiles, answers by status, and the server's resident memory (from /metrics) before,
after a warm-up, and at the end. Every request uses a fixed number of speech tokens
(random weights never stop by themselves), so all requests cost the same.

    benches/serve_load.py --bundle onnx/tiny --requests 200 --clients 8 \\
        --server-args "--concurrency 2 --max-queue 16" --json out.json --markdown out.md

A 429 is counted apart (the intended answer of a full queue); anything else that is not
200, and any 200 whose body is not the expected length, is an error; the script exits 1
when there are errors.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def one_request(host, port, body, timeout):
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/audio/speech", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        first = None
        size = 0
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            if first is None:
                first = time.monotonic() - t0
            size += len(chunk)
        return resp.status, first, time.monotonic() - t0, size
    except Exception as e:  # noqa: BLE001 - any failure is an error of the run
        return f"error: {e}", None, time.monotonic() - t0, 0
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=os.path.join(ROOT, "onnx/tiny"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/chatterbox-ort"))
    ap.add_argument("--url", help="use a running server instead of starting one")
    ap.add_argument("--server-args", default="--concurrency 2 --max-queue 16")
    ap.add_argument("--threads", type=int, default=None, help="--threads of the server")
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=50, help="speech tokens per request")
    ap.add_argument("--format", default="pcm")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--retry-429", action="store_true",
                    help="a client answered 429 waits Retry-After (1 s) and sends the request again")
    ap.add_argument("--rss-every", type=int, default=0,
                    help="also sample the server's RSS after every N answered requests")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    if not (1 <= a.requests <= 100000 and 1 <= a.clients <= 1024 and 1 <= a.tokens <= 4096):
        sys.exit("serve_load: --requests 1..100000, --clients 1..1024, --tokens 1..4096")

    proc = None
    if a.url:
        base = a.url.rstrip("/")
    else:
        cmd = [a.bin, "serve", "--bundle", a.bundle, "--bind", "127.0.0.1:0"] + a.server_args.split()
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if "http://" not in line:
            sys.exit(f"serve_load: the server did not start: {line!r}")
        base = "http://" + line.split("http://")[1].split()[0]
    host, port = base[len("http://"):].split(":")
    port = int(port)
    body = json.dumps({
        "model": "tts-1", "input": "The quick brown fox jumps over the lazy dog.",
        "voice": "alloy", "response_format": a.format, "stream_format": "audio",
        "seed": 1, "max_new_tokens": a.tokens, "min_new_tokens": a.tokens,
    })
    try:
        load_before = os.getloadavg()
        rss_start = metric(base, "chatterbox_resident_memory_bytes")
        sizes = set()
        for _ in range(a.warmup):
            st, _, _, size = one_request(host, port, body, a.timeout)
            if st != 200:
                sys.exit(f"serve_load: warm-up request failed: {st}")
            sizes.add(size)
        rss_warm = metric(base, "chatterbox_resident_memory_bytes")
        results = []
        retried = [0]
        rss_trace = []
        lock = threading.Lock()
        todo = list(range(a.requests))

        def client():
            while True:
                with lock:
                    if not todo:
                        return
                    todo.pop()
                r = one_request(host, port, body, a.timeout)
                while a.retry_429 and r[0] == 429:
                    with lock:
                        retried[0] += 1
                    time.sleep(1.0)
                    r = one_request(host, port, body, a.timeout)
                with lock:
                    results.append(r)
                    n = len(results)
                if a.rss_every and n % a.rss_every == 0:
                    rss = metric(base, "chatterbox_resident_memory_bytes")
                    with lock:
                        rss_trace.append((n, rss / 2**20 if rss else None))

        t0 = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        rss_end = metric(base, "chatterbox_resident_memory_bytes")
        load_after = os.getloadavg()
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)

    ok = [r for r in results if r[0] == 200]
    expected = sizes.pop() if len(sizes) == 1 else None
    bad_size = [r for r in ok if expected is not None and r[3] != expected]
    rejected = [r for r in results if r[0] == 429]
    errors = [r for r in results if r[0] not in (200, 429)] + bad_size
    by_status = {}
    for r in results:
        by_status[str(r[0])] = by_status.get(str(r[0]), 0) + 1
    lat = [r[2] for r in ok]
    ttfa = [r[1] for r in ok if r[1] is not None]
    audio_s = (expected or 0) / 2 / 24000 if a.format == "pcm" else None
    out = {
        "bundle": a.bundle, "server_args": a.server_args, "threads": a.threads,
        "requests": a.requests, "clients": a.clients, "tokens": a.tokens, "format": a.format,
        "wall_s": wall, "ok": len(ok), "rejected_429": len(rejected) + retried[0],
        "retried_429": retried[0], "errors": len(errors), "rss_trace_mib": sorted(rss_trace),
        "by_status": by_status,
        "throughput_rps": len(ok) / wall,
        "audio_s_per_request": audio_s,
        "audio_s_per_s": (audio_s * len(ok) / wall) if audio_s else None,
        "latency_s": {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat) if lat else None},
        "ttfa_s": {"p50": percentile(ttfa, 50), "p99": percentile(ttfa, 99), "max": max(ttfa) if ttfa else None},
        "rss_mib": {k: (v / 2**20 if v else None) for k, v in
                    (("start", rss_start), ("after_warmup", rss_warm), ("end", rss_end))},
        "load_before": load_before, "load_after": load_after,
        "cpus": os.cpu_count(),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    if a.markdown:
        f2 = lambda v: "n/a" if v is None else f"{v:.2f}"
        md = (
            f"| bundle | server | clients | requests | ok | 429 | errors | req/s | audio s/s | "
            f"latency p50 / p99 s | TTFA p50 / p99 s | RSS MiB start / warm / end | load before / after |\n"
            f"|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {os.path.basename(a.bundle.rstrip('/'))} | `{a.server_args}` | {a.clients} | {a.requests} | {len(ok)} | "
            f"{len(rejected) + retried[0]} | {len(errors)} | {f2(out['throughput_rps'])} | {f2(out['audio_s_per_s'])} | "
            f"{f2(out['latency_s']['p50'])} / {f2(out['latency_s']['p99'])} | "
            f"{f2(out['ttfa_s']['p50'])} / {f2(out['ttfa_s']['p99'])} | "
            f"{f2(out['rss_mib']['start'])} / {f2(out['rss_mib']['after_warmup'])} / {f2(out['rss_mib']['end'])} | "
            f"{load_before[0]:.2f} / {load_after[0]:.2f} |\n"
        )
        with open(a.markdown, "w") as f:
            f.write(md)
    if errors:
        print(f"serve_load: {len(errors)} error(s): {errors[:5]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
