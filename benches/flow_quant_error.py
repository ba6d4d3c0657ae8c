"""Error of a quantized flow estimator against the fp32 one, stage by stage.

    python benches/flow_quant_error.py --fp32 BUNDLE --quant QBUNDLE [--quant QBUNDLE2 ...] \
        [--tokens 100] [--seed 0] [--threads 2] [--no-floor] [--out result.json]
    python benches/flow_quant_error.py --from-json result.json

BUNDLE is an fp32 bundle (a real checkpoint's as well as a random one); each QBUNDLE one
written from it by `export/quantize_bundle.py --components flow_estimator=...`. The inputs
are what the engine gives the flow: the bundle's default voice (prompt tokens, prompt mel,
x-vector) and `--tokens` random speech codes through the bundle's `flow_encoder`, seeded
start noise. The fp32 Euler loop runs once (the manifest's steps, schedule and CFG: 10
cosine steps with CFG for the original model, 2 meanflow steps for Turbo), then per
quantized bundle:

* velocity: one estimator call on each fp32 step's inputs, relative L2 error of its output
  (both CFG rows), max and median over the steps;
* mel: its own Euler loop from the same noise, relative L2 error of the mel after the
  prompt (and the largest absolute difference);
* audio: HiFT on both mels with the same random draws: relative L2 error of the wav, and the
  distance of the wav's log-mel (the bundle's `s3gen_mel`, natural log): mean absolute
  difference and relative L2 error.

For scale (unless `--no-floor`) the fp32 loop is also run from another noise draw: the same
figures between two fp32 samples of the same tokens are the sampling's own variation, which
a quantization error well below is lost in. The measurement is
`quantize_bundle.flow_reference_run` / `flow_replay_error`, the same code that fills the
manifest's `self_check` of a quantized flow. Needs numpy, onnx and onnxruntime only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

import quantize_bundle as qb  # noqa: E402
from torchless import ort_session  # noqa: E402


def noise_floor(ref: dict, threads: int) -> dict:
    """The fp32 loop from another start noise (seed + 1000), against the reference run:
    mel, wav and log-mel differences of two fp32 samples."""
    inp = ref["inputs"]
    noise = np.random.default_rng(ref["seed"] + 1000).standard_normal(inp["noise"].shape).astype(np.float32)
    sess = ort_session(ref["bundle"] / "flow_estimator.onnx", threads)
    mel = qb.euler(sess, inp, noise=noise)
    wav, logmel = qb.vocode(ref["bundle"], ref["manifest"], mel, ref["seed"], threads)
    return {"mel_rel_error": qb._rel(mel, ref["mel"]), "wav_rel_error": qb._rel(wav, ref["wav"]),
            "log_mel_l1": float(np.abs(logmel.astype(np.float64) - ref["logmel"]).mean()),
            "log_mel_rel_error": qb._rel(logmel, ref["logmel"])}


def label(r: dict) -> str:
    """"int8 MatMulNBits (level 4)", "int8 dynamic", ... from a result's quantization record."""
    q = r.get("quantization") or {}
    if q.get("method", "").startswith("dynamic"):
        return f"{r['precision']} dynamic" + (" per channel" if q.get("per_channel") else "")
    if "block_size" in q:
        return f"{r['precision']} MatMulNBits (block {q['block_size']}, level {q.get('accuracy_level', 0)})"
    return r["precision"]


def table(doc: dict) -> str:
    """The Markdown table of a result document (what --out writes)."""
    tokens = doc["results"][0]["tokens"] if doc["results"] else doc["tokens"]
    lines = [f"{tokens} tokens, {doc['frames']} frames ({doc['prompt_frames']} prompt), batch {doc['batch']}, "
             f"{doc['steps']} steps, seed {doc['seed']}; fp32 bundle {doc['fp32']}", "",
             "| flow_estimator | MB | velocity rel err max / median | mel rel err | mel max abs | wav rel err "
             "| log-mel L1 | log-mel rel err |",
             "|---|---|---|---|---|---|---|---|",
             f"| fp32 | {doc['fp32_flow_estimator_bytes'] / 1e6:.1f} | - | - | - | - | - | - |"]
    for r in doc["results"]:
        lines.append(f"| {label(r)} | {r['flow_estimator_bytes'] / 1e6:.1f} | {r['max_rel_error']:.3g} / "
                     f"{r['median_rel_error']:.3g} | {r['mel_rel_error']:.3g} | {r['mel_max_abs_error']:.3g} | "
                     f"{r['wav_rel_error']:.3g} | {r['log_mel_l1']:.3g} | {r['log_mel_rel_error']:.3g} |")
    f = doc.get("fp32_other_noise")
    if f:
        lines.append(f"| fp32, other start noise (scale) | | | {f['mel_rel_error']:.3g} | | {f['wav_rel_error']:.3g} | "
                     f"{f['log_mel_l1']:.3g} | {f['log_mel_rel_error']:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Quantized flow_estimator vs fp32: velocity, mel, audio")
    p.add_argument("--fp32", type=Path, help="the fp32 bundle")
    p.add_argument("--quant", type=Path, action="append", help="a quantized bundle (repeatable)")
    p.add_argument("--from-json", type=Path, help="print the table of an earlier --out instead of measuring")
    p.add_argument("--tokens", type=int, default=qb.DEFAULT_TOKENS, help="speech tokens after the voice's prompt")
    p.add_argument("--seed", type=int, default=qb.CHECK_SEED)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-floor", action="store_true", help="skip the fp32-vs-fp32 run from other noise")
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.from_json:
        print(table(json.loads(args.from_json.read_text())))
        return 0
    if not args.fp32 or not args.quant:
        p.error("--fp32 and --quant are required")
    if args.tokens < 1:
        p.error("--tokens must be at least 1")

    fp32_spec = json.loads((args.fp32 / "manifest.json").read_text())["components"]["flow_estimator"]
    if fp32_spec["precision"] != "fp32":
        p.error(f"{args.fp32}: flow_estimator is {fp32_spec['precision']}, not fp32")
    print(f"fp32 reference: {args.fp32} ({args.tokens} tokens, seed {args.seed})")
    ref = qb.flow_reference_run(args.fp32, args.tokens, args.seed, args.threads)
    results = []
    for q in args.quant:
        spec = json.loads((q / "manifest.json").read_text())["components"]["flow_estimator"]
        src = spec.get("quantization", {}).get("fp32_sha256")
        if src is not None and src != fp32_spec["files"][0]["sha256"]:
            print(f"warning: {q} was not quantized from {args.fp32}'s flow_estimator", file=sys.stderr)
        print(f"{q}: {spec['precision']} ({spec.get('quantization', {}).get('method', 'not quantized')})")
        err = qb.flow_replay_error(ref, q / "flow_estimator.onnx", args.threads)
        results.append({"bundle": str(q), "precision": spec["precision"], "quantization": spec.get("quantization"),
                        "flow_estimator_bytes": sum(f["bytes"] for f in spec["files"]), **err})
    floor = None if args.no_floor else noise_floor(ref, args.threads)
    inp = ref["inputs"]
    doc = {"fp32": str(args.fp32), "fp32_flow_estimator_bytes": sum(f["bytes"] for f in fp32_spec["files"]),
           "tokens": inp["tokens"], "seed": args.seed, "frames": inp["frames"], "prompt_frames": inp["prompt_frames"],
           "batch": inp["batch"], "steps": inp["steps"], "results": results, "fp32_other_noise": floor}
    print()
    print(table(doc))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
