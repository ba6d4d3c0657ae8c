"""Cost of one T3 decode step against the number of cached positions.

Runs a bundle's `t3_decoder` (onnxruntime, CPU provider) at fixed cache lengths and
times single-token steps the way the engine runs them: with the in-place contract
(`past_len` input, capacity-sized buffers bound as both `past_*` and `present_*`
through IoBinding) or, for a bundle of the older contract (no `past_len`), with the
whole cache fed in and a one-longer copy returned. Every step at a given length
rewrites the same position, so the cache length stays fixed while timing.

    python benches/t3_step_cost.py --bundle DIR [--bundle OLD_DIR] --positions 50,1000 \
        --steps 20 --threads 2 [--batch 1] [--out result.json]

Needs numpy and onnxruntime only (no torch). Prints one line per (bundle, position):
median, min and max milliseconds per step, and the ratio of each position to the
first; records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def session(bundle: Path, threads: int) -> tuple[ort.InferenceSession, dict]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(bundle / "t3_decoder.onnx"), so, providers=["CPUExecutionProvider"])
    return sess, manifest


def step_times(sess, manifest, position: int, steps: int, batch: int, warmup: int) -> list[float]:
    t3 = manifest["config"]["t3"]
    d, layers, heads, hd = t3["hidden_size"], t3["num_layers"], t3["num_kv_heads"], t3["head_dim"]
    names = [i.name for i in sess.get_inputs()]
    in_place = "past_len" in names
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, d)).astype(np.float32)
    times = []
    if in_place:
        capacity = position + 1
        bufs = []
        for _ in range(2 * layers):
            a = np.zeros((batch, heads, capacity, hd), np.float32)
            a[:, :, :position] = rng.standard_normal((batch, heads, position, hd)).astype(np.float32) * 0.1
            bufs.append(ort.OrtValue.ortvalue_from_numpy(a))
        io = sess.io_binding()
        io.bind_cpu_input("inputs_embeds", x)
        io.bind_cpu_input("past_len", np.array([position], np.int64))
        for i in range(layers):
            for j, kind in enumerate(("key", "value")):
                io.bind_ortvalue_input(f"past_{kind}_{i}", bufs[2 * i + j])
                io.bind_ortvalue_output(f"present_{kind}_{i}", bufs[2 * i + j])
        io.bind_output("logits", "cpu")
        for k in range(warmup + steps):
            t0 = time.perf_counter()
            sess.run_with_iobinding(io)
            dt = time.perf_counter() - t0
            if k >= warmup:
                times.append(dt)
    else:
        feed = {"inputs_embeds": x}
        for i in range(layers):
            for kind in ("key", "value"):
                feed[f"past_{kind}_{i}"] = rng.standard_normal((batch, heads, position, hd)).astype(np.float32) * 0.1
        for k in range(warmup + steps):
            t0 = time.perf_counter()
            out = sess.run(None, feed)
            dt = time.perf_counter() - t0
            del out
            if k >= warmup:
                times.append(dt)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, action="append", required=True)
    p.add_argument("--positions", default="50,1000")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    positions = [int(v) for v in a.positions.split(",")]
    if any(v < 1 for v in positions) or a.steps < 1 or not 1 <= a.threads <= 256 or a.batch not in (1, 2):
        print("error: positions >= 1, steps >= 1, threads 1..256, batch 1 or 2", file=sys.stderr)
        return 2
    result = {"load_before": load(), "cpus": os.cpu_count(), "threads": a.threads, "batch": a.batch,
              "steps": a.steps, "runs": []}
    for bundle in a.bundle:
        sess, manifest = session(bundle, a.threads)
        contract = "in-place" if "past_len" in [i.name for i in sess.get_inputs()] else "concat"
        first = None
        for pos in positions:
            ts = step_times(sess, manifest, pos, a.steps, a.batch, a.warmup)
            med = statistics.median(ts) * 1e3
            first = first or med
            row = {"bundle": str(bundle), "contract": contract, "position": pos, "median_ms": med,
                   "min_ms": min(ts) * 1e3, "max_ms": max(ts) * 1e3, "ratio_to_first": med / first}
            result["runs"].append(row)
            print(f"{bundle} ({contract}) position {pos}: {med:.2f} ms/step (min {row['min_ms']:.2f}, max "
                  f"{row['max_ms']:.2f}), x{row['ratio_to_first']:.3f} of position {positions[0]}", flush=True)
        del sess
    result["load_after"] = load()
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
