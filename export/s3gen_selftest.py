"""Self-test of the S3Gen side of the exporter, independent of export_bundle.py.

    python export/s3gen_selftest.py [--config tiny|full] [--out DIR] [--seed N] [--no-goldens] [--precision fp32|fp16]

Builds the S3Gen modules and the Perth watermarker, exports the seven
components (ExportContext.export does the torch-vs-onnxruntime self-check at
>= 2 lengths), makes the flow / hift / watermark goldens with the reference
code, then replays them through onnxruntime as the engine would (flow_encoder,
host Euler loop with CFG over flow_estimator, hift, perth) and compares the
front-end graphs with the reference front-ends. Prints sizes and errors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ExportContext, ort_session, rel_error, log  # noqa: E402
import s3gen_side as side  # noqa: E402


def _run(sess, **feed):
    return sess.run(None, {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in feed.items()})


@torch.no_grad()
def replay(ctx: ExportContext, s3, wm, ref: dict) -> dict:
    """Runs the bundle graphs the way the engine will and compares with the
    goldens / reference front-ends. Returns name -> rel error."""
    d = ctx.out_dir
    g = ctx.goldens
    errs = {}
    thr = ctx.threads

    # front-ends against the reference code
    from chatterbox.models.s3gen.utils.mel import mel_spectrogram

    wav16 = ref["s3gen_ref_16k"]
    sess = ort_session(d / "s3_tokenizer.onnx", thr)
    got = _run(sess, wav=wav16)[0]
    want = ref["prompt_token_full"].numpy()
    errs["s3_tokenizer_vs_reference(tokens differing)"] = float(np.mean(got != want)) if got.shape == want.shape else 1.0
    sess = ort_session(d / "campplus.onnx", thr)
    errs["campplus_vs_reference"] = rel_error(ref["embedding"].numpy(), _run(sess, wav=wav16)[0])
    sess = ort_session(d / "s3gen_mel.onnx", thr)
    errs["s3gen_mel_vs_reference"] = rel_error(
        mel_spectrogram(ref["wav24"]).transpose(1, 2).numpy(), _run(sess, wav=ref["wav24"])[0]
    )

    if "flow_mu" not in g:
        return errs
    # flow: encoder, then the engine's Euler loop with CFG
    tokens = np.concatenate([ref["prompt_token"].numpy(), g["flow_tokens"]], axis=1)
    sess = ort_session(d / "flow_encoder.onnx", thr)
    mu, spks = _run(sess, tokens=tokens, speaker_emb=ref["embedding"])
    errs["flow_mu"] = rel_error(g["flow_mu"], mu)
    est = ort_session(d / "flow_estimator.onnx", thr)
    frames = mu.shape[2]
    n_prompt = ref["prompt_feat"].shape[1]
    cond = np.zeros((1, 80, frames), np.float32)
    cond[:, :, :n_prompt] = ref["prompt_feat"].numpy().transpose(0, 2, 1)
    x = g["flow_noise"].copy()
    t_span = (1 - torch.cos(torch.linspace(0, 1, 11) * 0.5 * torch.pi)).numpy()
    mask = np.ones((2, 1, frames), np.float32)
    zeros = np.zeros_like(mu)
    for i in range(10):
        t, r = t_span[i], t_span[i + 1]
        v = est.run(None, {
            "x": np.concatenate([x, x]), "mask": mask, "mu": np.concatenate([mu, zeros]),
            "t": np.array([t, t], np.float32), "spks": np.concatenate([spks, np.zeros_like(spks)]),
            "cond": np.concatenate([cond, np.zeros_like(cond)]),
        })[0]
        v = 1.7 * v[:1] - 0.7 * v[1:]
        x = x + (r - t) * v
    mel = x[:, :, n_prompt:].astype(np.float32)
    errs["flow_mel"] = rel_error(g["flow_mel"], mel)
    sess = ort_session(d / "hift.onnx", thr)
    wav = _run(sess, mel=g["flow_mel"], phase_init=g["hift_phase_init"], sine_noise=g["hift_sine_noise"])[0]
    errs["hift_wav"] = rel_error(g["hift_wav"], wav)
    sess = ort_session(d / "perth.onnx", thr)
    out = _run(sess, wav=g["wm_input_32k"])[0]
    errs["wm_output_32k"] = rel_error(g["wm_output_32k"], out)
    return errs


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-goldens", action="store_true")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16"], help="fp16: flow_estimator with fp16 weights")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out or tempfile.mkdtemp(prefix=f"s3gen-selftest-{args.config}-"))
    ctx = ExportContext(out, args.config, args.seed, None, args.precision)
    t0 = time.time()
    s3 = side.build_s3gen(args.config, args.seed, None)
    wm = side.build_watermarker(args.config, args.seed)
    n_params = sum(p.numel() for p in s3.parameters())
    log(f"s3gen {args.config}: {n_params / 1e6:.2f} M params; perth {sum(p.numel() for p in wm.perth_net.encoder.parameters()) / 1e6:.2f} M (encoder)")

    class TTS:
        pass

    tts = TTS()
    tts.s3gen, tts.watermarker = s3, wm
    side.export_components(ctx, tts)

    # a 4.3 s reference clip, 24 kHz
    wav24 = side.test_signal(103200, 24000, 42)
    ref = side.s3gen_ref(tts, wav24)
    ref["wav24"] = wav24
    tok_full, _ = s3.tokenizer(ref["s3gen_ref_16k"].float())
    ref["prompt_token_full"] = tok_full
    ref["prompt_feat"] = ref["prompt_feat"][:, : 2 * ref["prompt_token"].shape[1]]
    if not args.no_goldens:
        side.make_goldens(ctx, tts, ref)
    errs = replay(ctx, s3, wm, ref)
    print("\n== components ==")
    total = 0
    for name, c in ctx.components.items():
        b = sum(f["bytes"] for f in c["files"])
        total += b
        shapes = {i["name"]: i["shape"] for i in c["inputs"] + c["outputs"]}
        print(f"{name:15s} {b / 1e6:9.2f} MB  self-check {c['self_check']['max_rel_error']:.3g}  {shapes}")
    print(f"total {total / 1e6:.2f} MB")
    print("== replay vs goldens / reference ==")
    for k, v in errs.items():
        print(f"{k:45s} {v:.3g}")
    print("== goldens ==")
    for k, v in ctx.goldens.items():
        print(f"{k:18s} {v.dtype} {list(v.shape)}")
    print(f"done in {time.time() - t0:.0f}s, out {out}")


if __name__ == "__main__":
    main()
