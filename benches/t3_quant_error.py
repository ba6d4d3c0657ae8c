"""Error of a quantized T3 decoder against the fp32 one, under teacher forcing.

    python benches/t3_quant_error.py --fp32 BUNDLE --quant QBUNDLE [--quant QBUNDLE2 ...] \
        [--tokens 100] [--threads 2] [--out result.json]

BUNDLE is an fp32 bundle; each QBUNDLE one written from it by
`export/quantize_bundle.py`. The fp32 `t3_decoder` runs once: prefill in the engine's
layout (the bundle's default voice, a fixed text of random ids; both CFG rows for the
original model) then `--tokens` speech codes drawn from its own sampling distribution
(seeded), one per step on the KV cache; each quantized decoder is replayed on the same
inputs. Per quantized bundle: max / median relative L2 error of the logits (per step
and batch row), mean / max KL(p_fp32 || p_quant) of the sampling distribution (CFG,
repetition penalty, the manifest's temperature, no truncation: top_p 1) and argmax
agreement over the steps, plus the size of its `t3_decoder` files. The measurement is
`quantize_bundle.reference_run` / `replay_error`, the same code that fills the
manifest's `self_check` of a quantized bundle. Needs numpy, onnx and onnxruntime only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))

import quantize_bundle as qb  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Quantized t3_decoder vs fp32 under teacher forcing")
    p.add_argument("--fp32", type=Path, required=True, help="the fp32 bundle")
    p.add_argument("--quant", type=Path, action="append", required=True, help="a quantized bundle (repeatable)")
    p.add_argument("--tokens", type=int, default=qb.DEFAULT_TOKENS, help="forced tokens after the prefill")
    p.add_argument("--seed", type=int, default=qb.CHECK_SEED)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.tokens < 1:
        p.error("--tokens must be at least 1")

    fp32_spec = json.loads((args.fp32 / "manifest.json").read_text())["components"]["t3_decoder"]
    if fp32_spec["precision"] != "fp32":
        p.error(f"{args.fp32}: t3_decoder is {fp32_spec['precision']}, not fp32")
    print(f"fp32 reference: {args.fp32} ({args.tokens} forced tokens, seed {args.seed})")
    ref = qb.reference_run(args.fp32, args.tokens, args.seed, args.threads)
    results = []
    for q in args.quant:
        spec = json.loads((q / "manifest.json").read_text())["components"]["t3_decoder"]
        src = spec.get("quantization", {}).get("fp32_sha256")
        if src is not None and src != fp32_spec["files"][0]["sha256"]:
            print(f"warning: {q} was not quantized from {args.fp32}'s t3_decoder", file=sys.stderr)
        print(f"{q}: {spec['precision']}")
        err = qb.replay_error(ref, q / "t3_decoder.onnx", args.threads)
        results.append({"bundle": str(q), "precision": spec["precision"], "quantization": spec.get("quantization"),
                        "t3_decoder_bytes": sum(f["bytes"] for f in spec["files"]), **err})
    fp32_bytes = sum(f["bytes"] for f in fp32_spec["files"])
    print("\n| precision | t3_decoder MB | logits rel err max | median | KL mean | KL max | argmax agree |")
    print("|---|---|---|---|---|---|---|")
    print(f"| fp32 | {fp32_bytes / 1e6:.1f} | - | - | - | - | - |")
    for r in results:
        print(f"| {r['precision']} | {r['t3_decoder_bytes'] / 1e6:.1f} | {r['max_rel_error']:.3g} | "
              f"{r['median_rel_error']:.3g} | {r['kl_mean']:.3g} | {r['kl_max']:.3g} | "
              f"{100 * r['argmax_agreement']:.1f} % |")
    print(f"(fp32 sampling distribution: mean entropy {results[0]['fp32_entropy_mean']:.3g} nats)")
    if args.out:
        doc = {"fp32": str(args.fp32), "fp32_t3_decoder_bytes": fp32_bytes, "tokens": args.tokens,
               "seed": args.seed, "results": results}
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
