"""Voice goldens at several source rates and channel counts (docs/BUNDLE.md, "Voice goldens").

    python export/voice_goldens.py [--bundle onnx/tiny]

Rebuilds the bundle's reference model from its manifest (config and seed; random bundles
only), checks it is the model of the bundle (its `prepare_conditionals(goldens/ref.wav)`
must give the committed goldens: tokens equal, embeddings and mel within 1e-5), then writes short clips cut from goldens/ref.wav
at other rates, sample formats and channel counts to `goldens/voices/*.wav`, and for each
the conditionals `ChatterboxTTS.prepare_conditionals` builds from the file to
`goldens/voices/voices.safetensors` (`<clip>.<tensor>`), described in `voices.json`.
Deterministic: the same bundle gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import ExportError, log, save_safetensors  # noqa: E402

# name: (sample rate, channels, soundfile subtype, start s, seconds). The clips are cut
# from ref.wav (22.05 kHz, itself a golden source rate) and brought to their rate with
# soxr VHQ; they only need to be deterministic speech-like input at that rate.
CLIPS = {
    "mono_8k_f32": (8000, 1, "FLOAT", 0.3, 4.0),
    "mono_44k1_s16": (44100, 1, "PCM_16", 0.5, 2.5),
    "mono_48k_s24": (48000, 1, "PCM_24", 1.0, 2.0),
    "stereo_24k_s16": (24000, 2, "PCM_16", 2.0, 2.5),
}
# The right channel of a stereo clip: the left one delayed by this many samples, at this gain.
STEREO_DELAY, STEREO_GAIN = 37, 0.6
TENSORS = ("t3_prompt_tokens", "s3gen_prompt_tokens", "xvector", "ve_embedding", "prompt_mel")


def conds_tensors(tts) -> dict:
    c = tts.conds
    return {
        "t3_prompt_tokens": torch.atleast_2d(c.t3.cond_prompt_speech_tokens).long(),
        "s3gen_prompt_tokens": c.gen["prompt_token"].long(),
        "xvector": c.gen["embedding"].float().reshape(1, -1),
        "ve_embedding": c.t3.speaker_emb.float().reshape(1, -1),
        "prompt_mel": c.gen["prompt_feat"].float(),
    }


def make_clip(ref: Path, path: Path, sr: int, channels: int, subtype: str, start: float, seconds: float) -> None:
    import librosa
    import soundfile as sf

    x, ref_sr = librosa.load(str(ref), sr=None)
    x = x[int(start * ref_sr): int((start + seconds) * ref_sr)]
    x = librosa.resample(x, orig_sr=ref_sr, target_sr=sr, res_type="soxr_vhq")
    if channels == 2:
        right = STEREO_GAIN * np.concatenate([np.zeros(STEREO_DELAY, x.dtype), x[:-STEREO_DELAY]])
        x = np.stack([x, right], axis=1)
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    if subtype == "FLOAT":
        write_float_wav(path, x, sr)
    else:
        sf.write(str(path), x, sr, subtype=subtype)


def write_float_wav(path: Path, x: np.ndarray, sr: int) -> None:
    """32-bit float WAV (format 3) with only the fmt and data chunks: libsndfile adds a PEAK
    chunk holding the time of writing, which would make the file differ on every run."""
    import struct

    channels = 1 if x.ndim == 1 else x.shape[1]
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, sr, sr * channels * 4, channels * 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write goldens/voices/ of a bundle")
    p.add_argument("--bundle", type=Path, default=HERE.parent / "onnx" / "tiny")
    args = p.parse_args(argv)
    bundle = args.bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["model"]
    if model["origin"]["kind"] != "random":
        raise ExportError(f"{bundle}: voice goldens need a random bundle (its weights are rebuilt from the seed)")
    import export_bundle
    import soxr

    torch.manual_seed(model["origin"]["seed"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    tts = export_bundle.build_tts(model["config"], model["origin"]["seed"], None, bundle / "tokenizer.json")
    gdir = bundle / "goldens"
    ref = gdir / "ref.wav"
    golden = __import__("safetensors.numpy", fromlist=["load_file"]).load_file(str(gdir / "goldens.safetensors"))
    with torch.inference_mode():
        tts.prepare_conditionals(str(ref), exaggeration=0.5)
    got = conds_tensors(tts)
    # Tokens must be equal; float outputs may differ by float rounding (thread count,
    # kernel choice of this run versus the export's).
    for name in TENSORS:
        a, b = got[name].numpy(), golden[name]
        if a.dtype.kind == "i":
            ok = np.array_equal(a, b)
        else:
            ok = a.shape == b.shape and np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
        if not ok:
            raise ExportError(f"rebuilt model differs from {bundle}: {name} of goldens/ref.wav")
    log("rebuilt reference model reproduces the conditioning goldens of ref.wav")

    vdir = gdir / "voices"
    vdir.mkdir(parents=True, exist_ok=True)
    tensors, clips = {}, {}
    for name, (sr, ch, subtype, start, seconds) in CLIPS.items():
        wav = vdir / f"{name}.wav"
        make_clip(ref, wav, sr, ch, subtype, start, seconds)
        with torch.inference_mode():
            tts.prepare_conditionals(str(wav), exaggeration=0.5)
        for k, v in conds_tensors(tts).items():
            tensors[f"{name}.{k}"] = v.contiguous()
        clips[name] = {"file": f"voices/{name}.wav", "sample_rate": sr, "channels": ch, "subtype": subtype,
                       "seconds": seconds, "cut_from_ref_wav_at": start,
                       "t3_prompt_tokens": int(tensors[f"{name}.t3_prompt_tokens"].shape[1]),
                       "s3gen_prompt_tokens": int(tensors[f"{name}.s3gen_prompt_tokens"].shape[1])}
        log(f"{wav.name}: {sr} Hz x{ch} {subtype}, {clips[name]['t3_prompt_tokens']} T3 / "
            f"{clips[name]['s3gen_prompt_tokens']} S3Gen prompt tokens")
    save_safetensors(vdir / "voices.safetensors", tensors,
                     metadata={"format": "chatterbox-ort-voice-goldens", "version": "1"})
    doc = {
        "how": "ChatterboxTTS.prepare_conditionals(<clip>) with the bundle's reference model (rebuilt from "
               "manifest seed/config by export/voice_goldens.py); tensors <clip>.<name> in voices.safetensors",
        "tensors": {
            "t3_prompt_tokens": "t3.cond_prompt_speech_tokens [1, <=150]",
            "s3gen_prompt_tokens": "gen.prompt_token [1, N]",
            "xvector": "gen.embedding [1, 192]",
            "ve_embedding": "t3.speaker_emb [1, 256]",
            "prompt_mel": "gen.prompt_feat [1, 2N or 2N+1, 80]",
        },
        "clips_made_by": f"librosa.load(goldens/ref.wav, sr=None), cut, librosa.resample(res_type='soxr_vhq'); "
                         f"stereo right channel = left delayed {STEREO_DELAY} samples x {STEREO_GAIN}; "
                         f"clipped to [-1, 1], written by soundfile (float32: fmt + data chunks only)",
        "reference_resamplers": f"librosa {__import__('librosa').__version__} soxr_hq (python-soxr {soxr.__version__}, "
                                f"libsoxr {soxr.__libsoxr_version__}), torchaudio {__import__('torchaudio').__version__} "
                                "Resample (S3Gen prompt)",
        "clips": clips,
    }
    (vdir / "voices.json").write_text(json.dumps(doc, indent=2) + "\n")
    total = sum(f.stat().st_size for f in vdir.iterdir())
    log(f"{vdir}: {total / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
