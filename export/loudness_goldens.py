"""Loudness goldens: pyloudnorm's BS.1770-4 integrated loudness as the reference's Turbo
`norm_loudness` uses it (chatterbox-tts 0.1.7, tts_turbo.py).

    python export/loudness_goldens.py [--out tests/fixtures]

`ChatterboxTurboTTS.norm_loudness(wav, sr, target_lufs=-27)`:

    meter = pyloudnorm.Meter(sr); loudness = meter.integrated_loudness(wav)
    gain_linear = 10 ** ((target_lufs - loudness) / 20)
    if isfinite(gain_linear) and gain_linear > 0: wav = wav * gain_linear
    (any exception: print a warning, return wav unchanged)

For every committed WAV under onnx/tiny/goldens (ref.wav, voices/*.wav) and for synthetic clips
this script writes (deterministically) to `<out>/loudness/*.wav`, each loaded exactly as the
reference loads a voice (`librosa.load(path, sr=24000)`, mono), it records the sample count,
a sha256 of the loaded float32 samples, pyloudnorm's integrated loudness (or the exception
it raised), the gain norm_loudness computes and whether it applies it, checked by calling
the reference `ChatterboxTurboTTS.norm_loudness` itself. Output: `<out>/loudness.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SR = 24000
TARGET_LUFS = -27.0
GOLDENS = ROOT / "onnx" / "tiny" / "goldens"
MAX_FIXTURE_BYTES = 1_000_000


# ----------------------------------------------------------------------------- synthetic clips


def _speechlike(n: int, seed: int) -> np.ndarray:
    """A gliding harmonic tone with a syllable envelope plus a little noise, peak 1."""
    g = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.9 * t + g.uniform(0, 6))
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((1.0 / k) * np.sin(k * ph + g.uniform(0, 6)) for k in range(1, 16))
    env = np.clip(np.sin(2 * np.pi * 2.7 * t + g.uniform(0, 6)), 0, None) ** 0.5
    x = x * env + 0.02 * g.standard_normal(n)
    return x / np.abs(x).max()


def _db(d: float) -> float:
    return 10.0 ** (d / 20.0)


def synthetic_clips() -> dict:
    """name -> (float64 samples at 24 kHz in [-1, 1], WAV subtype, description)."""
    n = lambda s: int(round(s * SR))  # noqa: E731
    t6 = np.arange(n(6.0)) / SR
    clips = {}
    clips["sine_1k_m20dbfs_6s"] = (
        _db(-20) * np.sin(2 * np.pi * 1000 * t6), "PCM_16",
        "1 kHz sine, peak -20 dBFS (amplitude 0.1), 6 s (BS.1770 calibration: expect about -23 LUFS)")
    g = np.random.default_rng(1770)
    clips["white_noise_m20dbfs_3p07s"] = (
        np.clip(_db(-20) * g.standard_normal(n(3.07)), -1, 1), "PCM_16",
        "Gaussian white noise, RMS -20 dBFS, numpy default_rng(1770), 3.07 s: (3.07 - 0.4) / 0.1 = 26.7 rounds "
        "up, so pyloudnorm's last 400 ms block runs 30 ms past the end (a partial block)")
    half = n(1.5)
    clips["half_silent_3s"] = (
        np.concatenate([np.zeros(half), _db(-12) * _speechlike(half, 11)]), "PCM_16",
        "1.5 s of digital silence, then 1.5 s of a speech-like harmonic glide (peak -12 dBFS, seed 11): the "
        "silent blocks fall under the -70 LUFS absolute gate")
    clips["two_level_2p4s"] = (
        np.concatenate([_db(-12) * _speechlike(n(1.2), 12), _db(-40) * _speechlike(n(1.2), 13)]), "PCM_16",
        "1.2 s speech-like at peak -12 dBFS then 1.2 s at peak -40 dBFS (seeds 12, 13): the quiet half is above "
        "the absolute gate but under the relative gate (-10 LU)")
    clips["short_0p3s"] = (
        _db(-20) * _speechlike(n(0.3), 14), "PCM_16",
        "0.3 s speech-like, peak -20 dBFS (seed 14): shorter than one 400 ms gating block")
    clips["silence_0p5s"] = (np.zeros(n(0.5)), "PCM_16", "0.5 s of digital silence (all zeros)")
    t1 = np.arange(n(1.0)) / SR
    clips["quiet_sine_m85dbfs_1s"] = (
        _db(-85) * np.sin(2 * np.pi * 1000 * t1), "FLOAT",
        "1 kHz sine, peak -85 dBFS, 1 s, float32 WAV: every block is under the -70 LUFS absolute gate")
    return clips


def write_wav(path: Path, x: np.ndarray, sr: int, subtype: str) -> None:
    """Mono WAV with only the fmt and data chunks (byte-for-byte deterministic).
    PCM_16: round(x * 32767) clipped; FLOAT: IEEE float32."""
    if subtype == "PCM_16":
        data = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()
        fmt = struct.pack("<HHIIHH", 1, 1, sr, sr * 2, 2, 16)
    elif subtype == "FLOAT":
        data = np.asarray(x, dtype="<f4").tobytes()
        fmt = struct.pack("<HHIIHH", 3, 1, sr, sr * 4, 4, 32)
    else:
        raise ValueError(subtype)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# ----------------------------------------------------------------------------- measuring


def _gated_count(blocks) -> int:
    """Blocks kept by both gates, as pyloudnorm gates them (mono: z_j = 10 ** ((l_j + 0.691) / 10))."""
    above = [b for b in blocks if b >= -70.0]
    if not above:
        return 0
    gamma_r = -0.691 + 10.0 * np.log10(np.mean([10.0 ** ((b + 0.691) / 10.0) for b in above])) - 10.0
    return int(sum(1 for b in blocks if b > gamma_r and b > -70.0))


def measure(path: Path, rel: str) -> dict:
    import librosa
    import pyloudnorm as ln
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    wav, sr = librosa.load(str(path), sr=SR)  # what prepare_conditionals does (mono=True)
    assert sr == SR and wav.dtype == np.float32 and wav.ndim == 1
    entry = {
        "path": rel,
        "samples_24k": int(wav.shape[0]),
        "seconds_24k": round(wav.shape[0] / SR, 6),
        "sha256_f32le": hashlib.sha256(np.ascontiguousarray(wav, dtype="<f4").tobytes()).hexdigest(),
    }
    meter = ln.Meter(SR)
    try:
        loudness = meter.integrated_loudness(wav)
    except Exception as e:  # noqa: BLE001
        entry.update(integrated_lufs=None, pyloudnorm_error=f"{type(e).__name__}: {e}", gain_db=None,
                     gain_linear=None, norm_loudness_applies=False)
        loudness = None
    else:
        loudness = float(loudness)
        gain_db = TARGET_LUFS - loudness
        gain_linear = 10.0 ** (gain_db / 20.0)
        applies = math.isfinite(gain_linear) and gain_linear > 0.0
        blocks = meter.blockwise_loudness
        n_blocks = len(blocks)
        last_end = int(0.4 * ((n_blocks - 1) * 0.25 + 1) * SR) if n_blocks else 0
        entry.update(
            integrated_lufs=loudness if math.isfinite(loudness) else None,
            integrated_lufs_text=repr(loudness),
            gain_db=gain_db if math.isfinite(gain_db) else None,
            gain_linear=gain_linear if math.isfinite(gain_linear) else None,
            gain_linear_text=repr(gain_linear),
            norm_loudness_applies=applies,
            pyloudnorm_blocks=n_blocks,
            pyloudnorm_last_block_partial=bool(last_end > wav.shape[0]),
            blocks_above_absolute_gate=int(sum(1 for b in blocks if b >= -70.0)),
            blocks_above_both_gates=_gated_count(blocks),
        )
        deman = float(ln.Meter(SR, filter_class="DeMan").integrated_loudness(wav))
        entry["integrated_lufs_deman_filter"] = deman if math.isfinite(deman) else None

    # the reference function itself: it returns its input object when it does not apply a gain
    buf = io.StringIO()
    x = wav.copy()
    with contextlib.redirect_stdout(buf):
        out = ChatterboxTurboTTS.norm_loudness(None, x, SR, target_lufs=TARGET_LUFS)
    applied = out is not x
    if applied != entry["norm_loudness_applies"]:
        raise RuntimeError(f"{rel}: norm_loudness applies={applied}, expected {entry['norm_loudness_applies']}")
    if applied:
        want = wav * entry["gain_linear"]
        if not np.array_equal(out, want):
            raise RuntimeError(f"{rel}: norm_loudness output is not wav * gain_linear")
        entry["norm_loudness_output_dtype"] = str(out.dtype)
        entry["norm_loudness_output_sha256_f32le"] = hashlib.sha256(
            np.ascontiguousarray(out, dtype="<f4").tobytes()).hexdigest()
        # after the gain, the measured loudness is the target (to the meter's precision)
        after = float(ln.Meter(SR).integrated_loudness(np.asarray(out)))
        entry["integrated_lufs_after_gain"] = after
    if buf.getvalue().strip():
        entry["norm_loudness_printed"] = buf.getvalue().strip()
    return entry


def main(argv=None) -> int:
    import importlib.metadata as md

    p = argparse.ArgumentParser(description="Write tests/fixtures/loudness.json and tests/fixtures/loudness/*.wav")
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    args = p.parse_args(argv)
    fdir = args.out / "loudness"
    fdir.mkdir(parents=True, exist_ok=True)

    clips = []
    committed = [GOLDENS / "ref.wav"] + sorted((GOLDENS / "voices").glob("*.wav"))
    for path in committed:
        e = measure(path, path.relative_to(ROOT).as_posix())
        e["kind"] = "committed"
        clips.append(e)
    synth = synthetic_clips()
    for name, (x, subtype, desc) in synth.items():
        path = fdir / f"{name}.wav"
        write_wav(path, x, SR, subtype)
        e = measure(path, path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path))
        e.update(kind="synthetic", wav_subtype=subtype, made_by=desc)
        clips.append(e)
    size = sum(f.stat().st_size for f in fdir.glob("*.wav"))
    stale = sorted(f.name for f in fdir.iterdir() if f.stem not in synth)
    if stale:
        raise RuntimeError(f"{fdir}: files not made by this script: {stale}")

    import librosa
    import scipy
    import soxr

    doc = {
        "what": "pyloudnorm integrated loudness and the reference Turbo norm_loudness gain, per clip; made by "
                "export/loudness_goldens.py",
        "reference": "chatterbox-tts 0.1.7 tts_turbo.ChatterboxTurboTTS.norm_loudness(wav, 24000, target_lufs=-27): "
                     "loudness = pyloudnorm.Meter(24000).integrated_loudness(wav); gain_linear = 10 ** ((-27 - "
                     "loudness) / 20); applied (wav * gain_linear) only if finite and > 0; an exception is printed "
                     "and the clip is returned unchanged. ChatterboxTurboTTS.prepare_conditionals asserts the clip "
                     "is longer than 5 s before calling it",
        "load": "librosa.load(path, sr=24000) (mono: channel mean; soxr_hq resampling when the file is not 24 kHz)",
        "sha256": "sha256 of the loaded samples as little-endian float32 bytes",
        "meter": "pyloudnorm.Meter(24000) defaults: K-weighting as two RBJ-cookbook biquads designed at the rate "
                 "(high shelf +4 dB, Q 1/sqrt(2), 1500 Hz; high pass Q 0.5, 38 Hz; scipy.signal.lfilter, zero "
                 "initial state), 400 ms blocks with 75 % overlap, absolute gate -70 LUFS (>=), relative gate "
                 "-10 LU (>), channel gain 1.0",
        "pyloudnorm_details": [
            "blocks = int(round((T - 0.4) / 0.1)) + 1 with T = samples / 24000 and numpy's round-half-even; "
            "block j spans samples [int(0.4 * (j * 0.25) * 24000), int(0.4 * (j * 0.25 + 1) * 24000)); the last "
            "block may run past the end of the clip (pyloudnorm_last_block_partial): its sum covers only the "
            "samples that exist but is still divided by 9600",
            "the float32 input stays float32: each filter stage's float64 output is stored back into the float32 "
            "array, and the squares are summed in float32 (numpy pairwise summation)",
            "block loudness = -0.691 + 10 log10(mean square); a block of zeros is -inf",
            "no block above the absolute gate (silence, very quiet clips): the gated mean is nan, then 0 after "
            "nan_to_num, so the result is -inf (no exception); gain_linear is then inf and norm_loudness leaves "
            "the clip unchanged",
            "fewer samples than one block (0.4 * 24000 = 9600): ValueError('Audio must have length greater than "
            "the block size.'), caught by norm_loudness, which prints a warning and leaves the clip unchanged",
            "with numpy < 2 (value-based casting) wav * gain_linear stays float32",
        ],
        "other_meters": (
            "integrated_lufs_deman_filter = pyloudnorm.Meter(24000, filter_class='DeMan'): the same gating with "
            "the K-weighting coefficients of the BS.1770 document re-derived for the rate (shelf 1681.97 Hz, "
            "+3.99984 dB, Q 0.70718; high pass 38.1355 Hz, Q 0.50033), the filter libebur128 and the Rust ebur128 "
            "crate (its port) use. libebur128 only measures complete 400 ms blocks, so it matches this column "
            "except where pyloudnorm_last_block_partial is true; the default (RBJ) filter reads ~0.08 dB quieter "
            "on these clips. libebur128 returns -inf, not an error, for a clip shorter than one block"),
        "target_lufs": TARGET_LUFS,
        "versions": {"pyloudnorm": md.version("pyloudnorm"), "numpy": np.__version__, "scipy": scipy.__version__,
                     "librosa": librosa.__version__, "python-soxr": soxr.__version__,
                     "chatterbox_tts": md.version("chatterbox-tts")},
        "fixture_bytes": size,
        "clips": clips,
    }
    (args.out / "loudness.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    for c in clips:
        lufs = c.get("integrated_lufs")
        print(f"{c['path']:58s} {c['samples_24k']:7d}  "
              f"{(f'{lufs:8.3f}' if lufs is not None else c.get('integrated_lufs_text', c.get('pyloudnorm_error', ''))[:40]):>8s}"
              f"  gain {c.get('gain_linear_text', '-')}  applies {c['norm_loudness_applies']}")
    print(f"fixtures: {size} bytes in {fdir}")
    if size > MAX_FIXTURE_BYTES:
        raise RuntimeError(f"fixtures are {size} bytes, over {MAX_FIXTURE_BYTES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
