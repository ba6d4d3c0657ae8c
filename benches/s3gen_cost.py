"""Per-call time of S3Gen's graphs (`flow_estimator`, `hift`), several bundles side by side,
and ONNX Runtime's profile of where that time goes, operator by operator.

    python benches/s3gen_cost.py --bundle A [--bundle B ...] [--component flow_estimator|hift]
        [--batch 2] [--frames 600] [--calls 5] [--rounds 3] [--threads 2] [--out cost.json]
    python benches/s3gen_cost.py --bundle A --profile DIR [--component ...] [--top 15]
    python benches/s3gen_cost.py --bundle A [--bundle B ...] --torch   (flow_estimator, random bundles)

Timing: one CPU session per bundle (the engine's settings: all graph optimizations,
`--threads` intra-op threads, one inter-op thread), one warm-up call each, then `--rounds`
rounds in which every bundle runs `--calls` calls in turn (the order reversed every other
round, so drift hits all alike). Prints ms per call, median (min-max) over all calls, and
the ratio of medians to the first bundle; the load average before and after is recorded.

`--torch` adds the PyTorch reference estimator (chatterbox-tts 0.1.7's ConditionalDecoder, as
`ChatterboxTTS.generate` calls it: its own attention processors, `torch.no_grad`,
`torch.set_num_threads(--threads)`) to the same interleaved rounds, rebuilt from the first
bundle's seed (random bundles only; needs the export environment's torch), so engine / reference
ratios come from one process in which drift hits both alike. The reference's output is
compared with the first bundle's on the same inputs first (same weights: fp32 agrees to ~1e-6).

Profile (`--profile DIR`, first bundle only): the same session with
`SessionOptions.enable_profiling`, one warm-up call then `--calls` calls; the kernel
times of the measured calls are summed per operator type and printed as a Markdown table
with each type's share of all kernel time (MatMuls split into those with a constant
weight and those multiplying two activations: attention's scores and values). The raw
profile JSON stays in DIR.

Inputs are random (seeded) in the manifest's shapes: `batch` x 80 x `frames` for the
estimator (`t`, `r` uniform in [0, 1), mask ones), `frames` mel frames for HiFT (its
`samples` = frames x samples_per_mel_frame). Needs numpy, onnx and onnxruntime only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

from torchless import ort_session  # noqa: E402

COMPONENTS = ("flow_estimator", "hift")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def feeds(manifest: dict, component: str, batch: int, frames: int, seed: int = 0) -> dict:
    """Random inputs of `component` in the manifest's shapes."""
    spec = manifest["components"][component]
    s3 = manifest["config"]["s3gen"]
    dims = {"batch": batch, "frames": frames, "samples": frames * s3["samples_per_mel_frame"]}
    rng = np.random.default_rng(seed)
    out = {}
    for i in spec["inputs"]:
        shape = [dims[d] if isinstance(d, str) else d for d in i["shape"]]
        if i["name"] == "mask":
            out[i["name"]] = np.ones(shape, np.float32)
        elif i["name"] in ("t", "r"):
            out[i["name"]] = rng.uniform(0, 1, shape).astype(np.float32)
        elif i["name"] == "phase_init":
            out[i["name"]] = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
        else:
            out[i["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


def session(bundle: Path, component: str, threads: int, profile_dir: Path | None = None):
    if profile_dir is None:
        return ort_session(bundle / f"{component}.onnx", threads)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(profile_dir / f"{component}")
    return ort.InferenceSession(str(bundle / f"{component}.onnx"), so, providers=["CPUExecutionProvider"])


def weight_matmul_names(path: Path) -> set:
    """Names of the MatMul nodes whose second input is a constant (graph structure only)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    return {n.name for n in m.graph.node if n.op_type == "MatMul" and n.input[1] in inits}


CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


def summarize_profile(trace: Path, weight_names: set, warmup_runs: int = 1) -> dict:
    """Kernel time per operator type over the model runs after the first `warmup_runs`.

    Control-flow nodes (`If`, `Loop`, `Scan`) are left out: their time is that of the nodes of
    their subgraphs, which the profile lists too (the estimator's attention runs inside `If`)."""
    events = json.loads(trace.read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) <= warmup_runs:
        raise SystemExit(f"{trace}: {len(runs)} model runs, need more than {warmup_runs}")
    start = runs[warmup_runs]["ts"]
    measured = runs[warmup_runs:]
    ops: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        op = e.get("args", {}).get("op_name", "?")
        if op in CONTROL_FLOW:
            continue
        node = e["name"][: -len("_kernel_time")]
        if op == "MatMul":
            op = "MatMul (constant weight)" if node in weight_names else "MatMul (two activations)"
        d = ops.setdefault(op, {"us": 0, "calls": 0})
        d["us"] += e["dur"]
        d["calls"] += 1
    total = sum(d["us"] for d in ops.values())
    n = len(measured)
    rows = [{"op": op, "ms_per_run": d["us"] / 1e3 / n, "share": d["us"] / total, "nodes_per_run": d["calls"] / n}
            for op, d in sorted(ops.items(), key=lambda kv: -kv[1]["us"])]
    return {"runs": n, "run_ms": [r["dur"] / 1e3 for r in measured], "kernel_ms_per_run": total / 1e3 / n,
            "operators": rows}


def profile(args, manifest: dict) -> dict:
    bundle = args.bundle[0]
    args.profile.mkdir(parents=True, exist_ok=True)
    x = feeds(manifest, args.component, args.batch, args.frames)
    sess = session(bundle, args.component, args.threads, args.profile)
    load = [load_average()]
    for _ in range(1 + args.calls):
        sess.run(None, x)
    trace = Path(sess.end_profiling())
    load.append(load_average())
    res = summarize_profile(trace, weight_matmul_names(bundle / f"{args.component}.onnx"))
    res.update({"bundle": str(bundle), "component": args.component, "precision":
                manifest["components"][args.component]["precision"], "batch": args.batch, "frames": args.frames,
                "threads": args.threads, "trace": str(trace), "load_average": load})
    print(f"{args.component} of {bundle} ({res['precision']}), batch {args.batch}, {args.frames} frames, "
          f"{args.threads} threads: {res['runs']} profiled runs, median {np.median(res['run_ms']):.0f} ms per run, "
          f"kernel time {res['kernel_ms_per_run']:.0f} ms per run; load {load[0]} -> {load[1]}")
    print("\n| operator | ms per run | share | nodes |\n|---|---|---|---|")
    for r in res["operators"][: args.top]:
        print(f"| {r['op']} | {r['ms_per_run']:.1f} | {100 * r['share']:.1f} % | {r['nodes_per_run']:.0f} |")
    rest = res["operators"][args.top:]
    if rest:
        print(f"| {len(rest)} other types | {sum(r['ms_per_run'] for r in rest):.1f} | "
              f"{100 * sum(r['share'] for r in rest):.1f} % | |")
    return res


class TorchEstimator:
    """The reference flow estimator with a session's `run(None, feeds)`."""

    def __init__(self, manifest: dict, threads: int):
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
        import s3gen_side

        model = manifest["model"]
        origin = model.get("origin", {})
        if origin.get("kind") != "random":
            raise SystemExit(f"s3gen_cost: --torch rebuilds seeded random weights; the bundle's origin is {origin}")
        torch.set_num_threads(threads)
        meanflow = model.get("family", "original") == "turbo"
        s3 = s3gen_side.build_s3gen(model["config"], int(origin["seed"]), meanflow=meanflow)
        self.torch = torch
        self.estimator = s3.flow.decoder.estimator.eval()

    def run(self, _outputs, feeds: dict) -> list:
        t = self.torch
        names = ("x", "mask", "mu", "t", "spks", "cond", "r")
        args = [t.from_numpy(feeds[n]) for n in names if n in feeds]
        with t.no_grad():
            return [self.estimator(*args).numpy()]


def timing(args, manifests: list) -> dict:
    sessions, inputs = [], []
    for b, m in zip(args.bundle, manifests):
        sessions.append(session(b, args.component, args.threads))
        inputs.append(feeds(m, args.component, args.batch, args.frames))
    names = [str(b) for b in args.bundle]
    precisions = [m["components"][args.component]["precision"] for m in manifests]
    agreement = None
    if args.torch:
        sessions.append(TorchEstimator(manifests[0], args.threads))
        inputs.append(inputs[0])
        names.append("PyTorch reference")
        precisions.append("fp32 (torch)")
        ref, got = sessions[-1].run(None, inputs[0])[0], sessions[0].run(None, inputs[0])[0]
        agreement = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        print(f"{names[0]} against the PyTorch reference on the same inputs: relative L2 error {agreement:.3g}")
    load = [load_average()]
    for s, x in zip(sessions, inputs):  # warm-up
        s.run(None, x)
    times = [[] for _ in sessions]
    for r in range(args.rounds):
        order = list(range(len(sessions)))
        if r % 2:
            order.reverse()
        for i in order:
            for _ in range(args.calls):
                t = time.perf_counter()
                sessions[i].run(None, inputs[i])
                times[i].append((time.perf_counter() - t) * 1e3)
        load.append(load_average())
    base = float(np.median(times[0]))
    print(f"{args.component}, batch {args.batch}, {args.frames} frames, {args.threads} threads, {args.rounds} rounds "
          f"x {args.calls} calls; load average {load[0]} -> {load[-1]}")
    print("\n| bundle | precision | ms per call, median (min-max) | / first |\n|---|---|---|---|")
    results = []
    for k, (b, prec, t) in enumerate(zip(names, precisions, times)):
        med = float(np.median(t))
        print(f"| {b} | {prec} | {med:.0f} ({min(t):.0f}-{max(t):.0f}) | {med / base:.2f} |")
        quantization = manifests[k]["components"][args.component].get("quantization") if k < len(manifests) else None
        results.append({"bundle": b, "precision": prec, "quantization": quantization, "ms": t, "median_ms": med,
                        "ratio": med / base})
    if args.torch:
        ref = float(np.median(times[-1]))
        print("\n| bundle | / PyTorch reference |\n|---|---|")
        for b, t in zip(names[:-1], times[:-1]):
            print(f"| {b} | {float(np.median(t)) / ref:.3f} |")
    return {"component": args.component, "batch": args.batch, "frames": args.frames, "threads": args.threads,
            "calls": args.calls, "rounds": args.rounds, "load_average": load, "results": results,
            "torch_agreement_rel_l2": agreement}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Per-call time and operator profile of flow_estimator / hift")
    p.add_argument("--bundle", type=Path, action="append", required=True, help="a bundle (repeatable)")
    p.add_argument("--component", choices=COMPONENTS, default="flow_estimator")
    p.add_argument("--batch", type=int, default=2, help="estimator batch (2: the original model's CFG; hift: 1)")
    p.add_argument("--frames", type=int, default=600, help="mel frames")
    p.add_argument("--calls", type=int, default=5, help="calls per bundle per round (profile: measured calls)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", type=Path, metavar="DIR", help="profile the first bundle, write the trace to DIR")
    p.add_argument("--top", type=int, default=15, help="operator types listed by the profile")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    p.add_argument("--torch", action="store_true", help="time the PyTorch reference estimator in the same rounds")
    args = p.parse_args(argv)
    if args.torch and (args.component != "flow_estimator" or args.profile):
        p.error("--torch times the flow estimator (no --profile)")
    if args.component == "hift":
        args.batch = 1
    manifests = [json.loads((b / "manifest.json").read_text()) for b in args.bundle]
    import onnxruntime

    meta = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "onnxruntime": onnxruntime.__version__,
            "cpus": os.cpu_count()}
    res = profile(args, manifests[0]) if args.profile else timing(args, manifests)
    if args.out:
        args.out.write_text(json.dumps({**meta, **res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
