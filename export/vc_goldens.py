"""Voice-conversion goldens of a random bundle (reference `ChatterboxVC.generate`).

    python export/vc_goldens.py [--bundle onnx/tiny]

Rebuilds the bundle's S3Gen and Perth watermarker from its manifest (config and seed,
exactly as `export_bundle.py` builds them), proves they are the bundle's (the bundle's
`flow_encoder.onnx` in onnxruntime against torch on seeded tokens, and `set_target_voice` of
ref.wav and of the target clip against the committed conditioning and voice goldens), then runs the reference `ChatterboxVC` on
committed clips with every random draw fixed and given as a tensor:

* source: `goldens/voices/mono_48k_s24.wav`, `librosa.load(sr=16000)`, first SOURCE_SAMPLES
  samples (cut so that onnx/tiny stays under the 21 MB of tests/bundle_tiny.rs);
* target: `goldens/voices/stereo_24k_s16.wav` through `ChatterboxVC.set_target_voice`
  (`librosa.load(sr=24000)` mixes the two channels; 2.5 s, so no 10 s crop; its S3Gen mel has
  an odd frame count, 125 frames for 62 tokens, so the output has 2 M - 1 frames).

Writes `goldens/vc.safetensors` and `goldens/vc.json` (shapes, dtypes, how each tensor was
made, seeds, draw order, the bundle's own graphs run on the goldens, and the reference's
behaviour on long sources). Checks that the golden chain equals what `ChatterboxVC.generate`
returns under the same forced draws. goldens/ is not hashed by manifest.json, so adding
files there leaves the bundle valid; `export_bundle.py --out onnx/tiny` empties the folder,
so run this again after a re-export. Deterministic: the same bundle gives the same bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import ExportError, log, ort_session, rel_error, save_safetensors, sha256_file  # noqa: E402

S3_SR, S3GEN_SR, PERTH_SR = 16000, 24000, 32000
N_HARM, SAMPLES_PER_FRAME = 9, 480
SOURCE_CLIP = "voices/mono_48k_s24.wav"
SOURCE_SAMPLES = 9500  # 0.59 s at 16 kHz: 59 log-mel frames (9500 // 160) -> 15 tokens; not a multiple of 160
TARGET_CLIP = "voices/stereo_24k_s16.wav"
DRAW_SEED_OFFSET = 9001  # torch.Generator seed = manifest seed + this
CHECK_SEED_OFFSET = 9002  # tokens / x-vector of the flow_encoder weight check
LONG_CASES = {"60s": 60.0, "53s": 53.0}  # long sources: ref.wav at 16 kHz tiled and cut (53 s: the hole case)
TOL_WEIGHTS = 1e-5
MAX_BYTES = 900_000  # vc.safetensors + vc.json
BUNDLE_MAX_BYTES = 20_000_000  # the whole of onnx/tiny (tests/bundle_tiny.rs)


# ----------------------------------------------------------------------------- forced draws


class _FixedUniform:
    """hifigan.Uniform replacement: SineGen's phase_vec draw returns the given tensor."""

    phase = None

    def __init__(self, low, high):
        pass

    def sample(self, sample_shape):
        assert tuple(sample_shape) == tuple(self.phase.shape), (sample_shape, self.phase.shape)
        return self.phase.clone()


@contextlib.contextmanager
def forced_draws(noise: torch.Tensor, phase: torch.Tensor, sine_noise: torch.Tensor):
    """All random calls of S3Gen.inference return the given draws, as
    s3gen_side.reference_flow / reference_hift force them: the CFM's
    `randn_like(mu)` -> noise, SineGen's Uniform -> phase (harmonic 0 is zeroed by
    SineGen itself), SineGen's `randn_like(sine_waves)` -> sine_noise, and
    SourceModuleHnNSF's discarded `randn_like(uv)` -> zeros."""
    from chatterbox.models.s3gen import hifigan

    calls = []

    def fake(t, *a, **k):
        shape = tuple(t.shape)
        if shape == tuple(noise.shape):
            calls.append("flow_noise")
            return noise.clone().to(t.dtype)
        if shape == tuple(sine_noise.shape):
            calls.append("sine_noise")
            return sine_noise.clone().to(t.dtype)
        if shape[-1] == 1:
            calls.append("uv_noise(zeros)")
            return torch.zeros_like(t)
        raise AssertionError(f"unexpected randn_like{shape}")

    _FixedUniform.phase = phase
    old_u, old_r = hifigan.Uniform, torch.randn_like
    hifigan.Uniform, torch.randn_like = _FixedUniform, fake
    try:
        yield calls
    finally:
        hifigan.Uniform, torch.randn_like = old_u, old_r


# ----------------------------------------------------------------------------- helpers


def write_float_wav(path: Path, x: np.ndarray, sr: int) -> None:
    """32-bit float mono WAV with only fmt + data chunks (reads back bit-exactly)."""
    import struct

    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, sr, sr * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def clone_ref(ref: dict) -> dict:
    """A deep copy of an embed_ref dict (S3Gen.forward casts ref_dict's tensors in place)."""
    return {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in ref.items()}


def s3_token_count(n_samples: int) -> int:
    frames = n_samples // 160  # centred STFT gives n // 160 + 1 frames, the last is dropped
    return ((frames + 1) // 2 + 1) // 2


def euler_ort(run, mu, spks, prompt_feat, noise, steps=10, rate=0.7):
    """The engine's Euler loop (docs/BUNDLE.md) with the bundle's flow_estimator."""
    f32 = np.float32
    frames = mu.shape[2]
    n_prompt = prompt_feat.shape[1]
    cond = np.zeros((1, 80, frames), f32)
    cond[:, :, :n_prompt] = prompt_feat.transpose(0, 2, 1)
    t_span = (1 - np.cos(np.linspace(0, 1, steps + 1, dtype=np.float64) * 0.5 * np.pi)).astype(f32)
    x = noise.copy()
    mask = np.ones((2, 1, frames), f32)
    for i in range(steps):
        t, dt = t_span[i], t_span[i + 1] - t_span[i]
        v = run("flow_estimator", x=np.concatenate([x] * 2), mask=mask, mu=np.concatenate([mu, 0 * mu]),
                t=np.full((2,), t, f32), spks=np.concatenate([spks, 0 * spks]),
                cond=np.concatenate([cond, 0 * cond]))[0]
        x = x + dt * ((1 + f32(rate)) * v[:1] - f32(rate) * v[1:])
    return x[:, :, n_prompt:]


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write goldens/vc.safetensors + vc.json of a random bundle")
    p.add_argument("--bundle", type=Path, default=HERE.parent / "onnx" / "tiny")
    args = p.parse_args(argv)
    bundle = args.bundle
    gdir = bundle / "goldens"
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["model"]
    if model["origin"]["kind"] != "random":
        raise ExportError(f"{bundle}: VC goldens need a random bundle (its weights are rebuilt from the seed)")
    config, seed = model["config"], int(model["origin"]["seed"])
    if any(f["path"].startswith("goldens/") for f in manifest.get("files", [])):
        raise ExportError(f"{bundle}: manifest hashes goldens/ files; adding vc goldens would need a new manifest")

    import librosa
    import soxr
    from safetensors.numpy import load_file

    import s3gen_graphs
    import s3gen_side
    from chatterbox.vc import ChatterboxVC

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    s3 = s3gen_side.build_s3gen(config, seed, None)
    wm = s3gen_side.build_watermarker(config, seed)
    golden = load_file(str(gdir / "goldens.safetensors"))
    sess = {}

    def run(name, **feed):
        if name not in sess:
            sess[name] = ort_session(bundle / f"{name}.onnx")
        return sess[name].run(None, feed)

    checks = {}

    # -- 1. the rebuilt weights are the bundle's: flow_encoder.onnx vs torch
    g = torch.Generator().manual_seed(seed + CHECK_SEED_OFFSET)
    fe = s3gen_graphs.FlowEncoderGraph(s3.flow).eval()
    errs = []
    for n in (19, 83):
        tok = torch.randint(0, 6561, (1, n), generator=g)
        xv = torch.randn(1, 192, generator=g)
        with torch.no_grad():
            mu_t, spks_t = fe(tok, xv)
        mu_o, spks_o = run("flow_encoder", tokens=tok.numpy(), speaker_emb=xv.numpy())
        errs.append(max(rel_error(mu_t.numpy(), mu_o), rel_error(spks_t.numpy(), spks_o)))
    checks["flow_encoder_onnx_vs_rebuilt_torch"] = {
        "max_rel_error": max(errs), "bound": TOL_WEIGHTS,
        "inputs": f"torch.randint(0, 6561, (1, n)) then torch.randn(1, 192) for n = 19, 83, "
                  f"Generator seed {seed + CHECK_SEED_OFFSET}"}
    if not max(errs) <= TOL_WEIGHTS:
        raise ExportError(f"rebuilt S3Gen differs from {bundle}/flow_encoder.onnx (rel error {max(errs):.3g})")
    log(f"flow_encoder.onnx vs rebuilt torch: rel error {max(errs):.2g}")

    # the manifest's 2500-token cap is not a limit of the graph: 2501 tokens vs the reference encoder
    n = manifest["config"]["s3gen"]["max_tokens"] + 1
    tok = torch.randint(0, 6561, (1, n), generator=g)
    xv = torch.randn(1, 192, generator=g)
    with torch.inference_mode():
        h, _ = s3.flow.encoder(s3.flow.input_embedding(tok), torch.tensor([n]))
        h = s3.flow.encoder_proj(h).transpose(1, 2)
    over_cap = rel_error(h.numpy(), run("flow_encoder", tokens=tok.numpy(), speaker_emb=xv.numpy())[0])
    checks["flow_encoder_onnx_over_cap"] = {
        "tokens": n, "rel_error_vs_reference_encoder": over_cap,
        "inputs": "drawn after the weight check from the same Generator (randint (1, n), randn (1, 192))"}
    log(f"flow_encoder.onnx at {n} tokens vs reference encoder: rel error {over_cap:.2g}")

    # -- 2. the reference VC object, with the bundle's watermarker
    vc = ChatterboxVC(s3, "cpu")  # __init__ loads the packaged Perth weights: replaced by the bundle's
    vc.watermarker = wm

    # the bundle's reference clip through set_target_voice must give the committed conditioning goldens
    # (S3 tokenizer, CAM++ and mel weights; same clip and 10 s crop as prepare_conditionals)
    vc.set_target_voice(str(gdir / "ref.wav"))
    r = clone_ref(vc.ref_dict)
    same = (np.array_equal(r["prompt_token"].long().numpy(), golden["s3gen_prompt_tokens"])
            and rel_error(golden["xvector"], r["embedding"].float().numpy()) <= TOL_WEIGHTS
            and rel_error(golden["prompt_mel"], r["prompt_feat"].float().numpy()) <= TOL_WEIGHTS)
    if not same:
        raise ExportError("rebuilt S3Gen's set_target_voice(ref.wav) differs from the committed conditioning goldens")
    checks["ref_wav_target_vs_committed_goldens"] = (
        "set_target_voice(goldens/ref.wav): prompt_token == s3gen_prompt_tokens, embedding ~ xvector, prompt_feat ~ "
        "prompt_mel (rel <= 1e-5) of goldens.safetensors")

    target_path = gdir / TARGET_CLIP
    vc.set_target_voice(str(target_path))
    ref = clone_ref(vc.ref_dict)
    tgt_tok = ref["prompt_token"].long()
    tgt_feat = ref["prompt_feat"].float()
    tgt_emb = ref["embedding"].float()
    # the same clip through prepare_conditionals: goldens/voices/voices.safetensors
    vname = Path(TARGET_CLIP).stem
    voices = load_file(str(gdir / "voices" / "voices.safetensors"))
    same = (np.array_equal(tgt_tok.numpy(), voices[f"{vname}.s3gen_prompt_tokens"])
            and rel_error(voices[f"{vname}.xvector"], tgt_emb.numpy()) <= TOL_WEIGHTS
            and rel_error(voices[f"{vname}.prompt_mel"], tgt_feat.numpy()) <= TOL_WEIGHTS)
    if not same:
        raise ExportError(f"set_target_voice({TARGET_CLIP}) differs from voices.safetensors {vname}.*")
    checks["target_vs_committed_voice_goldens"] = (
        f"set_target_voice(goldens/{TARGET_CLIP}) == voices.safetensors {vname}.s3gen_prompt_tokens (equal), "
        f"{vname}.xvector, {vname}.prompt_mel (rel <= 1e-5)")
    log(f"target ref_dict: {tuple(tgt_tok.shape)} tokens, {tuple(tgt_feat.shape)} mel == committed goldens")

    # -- 3. the source: tokens as ChatterboxVC.generate computes them
    src_full, _ = librosa.load(str(gdir / SOURCE_CLIP), sr=S3_SR)
    src = np.ascontiguousarray(src_full[:SOURCE_SAMPLES], dtype=np.float32)
    if len(src) != SOURCE_SAMPLES:
        raise ExportError(f"{SOURCE_CLIP} is shorter than {SOURCE_SAMPLES} samples at 16 kHz")
    with torch.inference_mode():
        src_tok, src_tok_len = s3.tokenizer(torch.from_numpy(src).float()[None])  # = generate's call
        alt_tok, _ = s3.tokenizer.forward([src])  # the voice code's call
    src_tok = src_tok.long()
    if not torch.equal(src_tok, alt_tok.long()):
        raise ExportError("S3Tokenizer(audio_16[None]) differs from S3Tokenizer.forward([audio_16])")
    m_tok = src_tok.shape[1]
    assert m_tok == s3_token_count(SOURCE_SAMPLES) == int(src_tok_len[0]), (m_tok, s3_token_count(SOURCE_SAMPLES))

    # -- 4. draws, then the reference chain with them
    n_prompt = tgt_tok.shape[1]
    prompt_frames = tgt_feat.shape[1]
    frames = 2 * (n_prompt + m_tok)
    out_frames = frames - prompt_frames
    g = torch.Generator().manual_seed(seed + DRAW_SEED_OFFSET)
    noise = torch.randn(1, 80, frames, generator=g)
    phase = (torch.rand(1, N_HARM, 1, generator=g) * 2 - 1) * np.pi
    phase[:, 0] = 0
    sine_noise = torch.randn(1, N_HARM, SAMPLES_PER_FRAME * out_frames, generator=g)

    with torch.inference_mode():
        mel, mu, spks = s3gen_side.reference_flow(s3, src_tok, clone_ref(ref), noise)
        hift_wav = s3gen_side.reference_hift(s3, mel, phase, sine_noise)
    assert mel.shape == (1, 80, out_frames), mel.shape
    wav = hift_wav.clone()
    wav[:, : len(s3.trim_fade)] *= s3.trim_fade
    wav_np = wav[0].numpy().astype(np.float32)
    out_np = np.asarray(wm.apply_watermark(wav_np.copy(), sample_rate=S3GEN_SR), dtype=np.float32)

    # -- 5. ChatterboxVC.generate itself under the same draws must give the same audio
    captured = {}
    real_apply = wm.apply_watermark

    def spy(w, sample_rate):
        captured["wav"] = np.array(w, dtype=np.float32, copy=True)
        return real_apply(w, sample_rate=sample_rate)

    with tempfile.TemporaryDirectory(prefix="cbx-vc-") as tmp:
        src_wav = Path(tmp) / "source_16k.wav"
        write_float_wav(src_wav, src, S3_SR)
        reread, _ = librosa.load(str(src_wav), sr=S3_SR)
        assert np.array_equal(reread, src), "temporary 16 kHz float WAV does not read back exactly"
        wm.apply_watermark = spy
        try:
            with forced_draws(noise, phase, sine_noise) as calls:
                gen_out = vc.generate(str(src_wav), target_voice_path=str(target_path))
        finally:
            del wm.apply_watermark
    gen_out = gen_out.numpy().astype(np.float32)
    gen_ref_same = (torch.equal(vc.ref_dict["prompt_token"].long(), tgt_tok)
                    and torch.equal(vc.ref_dict["prompt_feat"].float(), tgt_feat))
    d_wav = float(np.abs(captured["wav"] - wav_np).max())
    d_out = float(np.abs(gen_out[0] - out_np).max())
    log(f"generate() under forced draws: draws used {calls}; max |diff| wav {d_wav:.3g}, output {d_out:.3g}")
    if calls != ["flow_noise", "sine_noise", "uv_noise(zeros)"] or not gen_ref_same or d_wav > 1e-6 or d_out > 1e-6:
        raise ExportError("ChatterboxVC.generate under the forced draws differs from the golden chain")
    checks["generate_vs_goldens"] = {
        "how": f"ChatterboxVC.generate(<vc_source_16k as a 16 kHz float WAV>, target_voice_path=goldens/{TARGET_CLIP}) "
               "with randn_like / hifigan.Uniform patched to return the draws",
        "randn_like_calls": calls, "max_abs_diff_vc_wav": d_wav, "max_abs_diff_vc_output": d_out}

    # -- 6. the bundle's own graphs on the goldens (what the engine will do)
    f32 = np.float32
    bc = {}
    s3t = run("s3_tokenizer", wav=src[None])[0]
    bc["s3_tokenizer(vc_source_16k) tokens differing"] = int((s3t != src_tok.numpy()).sum()) if s3t.shape == tuple(
        src_tok.shape) else f"shape {s3t.shape}"
    mu_o, spks_o = run("flow_encoder", tokens=np.concatenate([tgt_tok.numpy(), src_tok.numpy()], 1),
                       speaker_emb=tgt_emb.numpy())
    bc["flow_encoder vs reference mu"] = rel_error(mu.numpy(), mu_o)
    mel_o = euler_ort(run, mu_o, spks_o, tgt_feat.numpy(), noise.numpy())
    bc["Euler loop (flow_estimator) vs vc_mel"] = rel_error(mel.numpy(), mel_o)
    wav_o = run("hift", mel=mel.numpy(), phase_init=phase.numpy(), sine_noise=sine_noise.numpy())[0]
    bc["hift(vc_mel) vs vc_wav before the trim-fade"] = rel_error(hift_wav.numpy(), wav_o)
    x32 = librosa.resample(wav_np, orig_sr=S3GEN_SR, target_sr=PERTH_SR).astype(f32)
    core = s3gen_side.reference_perth_32k(wm, x32)
    bc["perth(resample(vc_wav, 32 kHz)) vs the reference 32 kHz core"] = rel_error(core[None], run("perth", wav=x32[None])[0])
    for k, v in bc.items():
        log(f"bundle check: {k}: {v:.3g}" if isinstance(v, float) else f"bundle check: {k}: {v}")
    checks["bundle_graphs_on_goldens"] = bc

    # -- 7. long sources: what the reference tokenizer does past 30 s
    long_facts, long_tensors, long_hows = long_source_facts(s3, gdir / "ref.wav", run)

    # -- write
    tensors = {
        "vc_source_16k": src,
        "vc_source_tokens": src_tok,
        "vc_target_prompt_token": tgt_tok,
        "vc_target_prompt_feat": tgt_feat,
        "vc_target_embedding": tgt_emb,
        "vc_flow_noise": noise,
        "vc_mel": mel,
        "vc_hift_phase_init": phase,
        "vc_hift_sine_noise": sine_noise,
        "vc_wav": wav_np[None],
        "vc_output": out_np[None],
        **long_tensors,
    }
    tensors = {k: (v.detach().contiguous().numpy() if torch.is_tensor(v) else np.ascontiguousarray(v))
               for k, v in tensors.items()}
    how = {
        "vc_source_16k": f"librosa.load(goldens/{SOURCE_CLIP}, sr=16000)[0][:{SOURCE_SAMPLES}] (the committed clip is "
                         f"{len(src_full)} samples at 16 kHz; cut so that onnx/tiny stays under 20 MB)",
        "vc_source_tokens": "S3Gen.tokenizer(torch.from_numpy(vc_source_16k)[None]) as ChatterboxVC.generate calls it "
                            "(= S3Tokenizer.forward([vc_source_16k]); no padding to 40 ms, no max_len; short path, "
                            "<= 30 s)",
        "vc_target_prompt_token": f"ChatterboxVC.set_target_voice(goldens/{TARGET_CLIP}).ref_dict['prompt_token']: "
                                  "librosa.load(sr=24000)[:240000] -> S3Gen.embed_ref (torchaudio 24->16 kHz, S3 tokens, "
                                  f"cut to mel_frames // 2); equals voices.safetensors {vname}.s3gen_prompt_tokens",
        "vc_target_prompt_feat": "ref_dict['prompt_feat']: S3Gen mel of the clip (<= 10 s), [1, frames, 80], kept "
                                 f"whole, odd frame included (all its frames are the flow prompt); equals {vname}.prompt_mel",
        "vc_target_embedding": f"ref_dict['embedding']: CAM++ x-vector of the clip at 16 kHz; equals {vname}.xvector",
        "vc_flow_noise": "the CFM start noise z = randn_like(mu), [1, 80, 2 (N + M)] over prompt + source frames "
                         "(the same draw for both CFG rows)",
        "vc_mel": "reference CausalMaskedDiffWithXvec.inference(token=vc_source_tokens, prompt = target ref_dict, "
                  "finalize=True, 10 steps): 10 Euler steps, cosine schedule, CFG 0.7, cond = prompt_feat in the "
                  "first prompt_feat frames; those frames removed (2 (N + M) - prompt frames remain)",
        "vc_hift_phase_init": "SineGen phase_vec: uniform [-pi, pi), harmonic 0 = 0",
        "vc_hift_sine_noise": "SineGen randn_like(sine_waves), standard normal, [1, 9, 480 x mel frames]",
        "vc_wav": "HiFTGenerator.inference(vc_mel) with those draws, then the trim-fade (first 480 samples zero, next "
                  "480 a raised cosine): what S3Gen.inference returns, the watermarker's input",
        "vc_output": "PerthImplicitWatermarker.apply_watermark(vc_wav, 24000) with the bundle's (tiny, random) Perth: "
                     "what ChatterboxVC.generate returns, [1, samples] at 24 kHz",
        **long_hows,
    }
    doc = {
        "what": "reference ChatterboxVC.generate (chatterbox-tts 0.1.7, vc.py) on the bundle's rebuilt S3Gen and "
                "Perth, every random draw fixed; made by export/vc_goldens.py",
        "bundle": {"config": config, "seed": seed, "manifest_sha256": sha256_file(bundle / "manifest.json")},
        "source": {"file": f"goldens/{SOURCE_CLIP}", "sha256": sha256_file(gdir / SOURCE_CLIP),
                   "loaded": "librosa.load(path, sr=16000) (soxr_hq, 48 kHz 24-bit -> 16 kHz)",
                   "samples_used": SOURCE_SAMPLES, "samples_in_file_at_16k": int(len(src_full)),
                   "tokens": int(m_tok),
                   "token_count_rule": "log-mel frames T = samples // 160; tokens = ceil(ceil(T / 2) / 2)"},
        "target": {"file": f"goldens/{TARGET_CLIP}", "sha256": sha256_file(target_path),
                   "loaded": "librosa.load(path, sr=24000)[:10 * 24000] (set_target_voice; mono = channel mean)",
                   "prompt_tokens": int(n_prompt), "prompt_frames": int(prompt_frames)},
        "flow": {"steps": 10, "cfg_rate": 0.7, "t_scheduler": "cosine", "frames_total": int(frames),
                 "frames_out": int(out_frames), "mu_frames_rule": "2 x (prompt tokens + source tokens); output = "
                 "mu frames - prompt_feat frames"},
        "hift": {"frames": int(out_frames), "samples": int(wav_np.shape[0])},
        "watermark": {"output_samples": int(out_np.shape[0]),
                      "resampler": f"librosa.resample soxr_hq (python-soxr {soxr.__version__})"},
        "draws": {"generator": f"torch.Generator().manual_seed({seed + DRAW_SEED_OFFSET}) (manifest seed + "
                               f"{DRAW_SEED_OFFSET})",
                  "order": ["vc_flow_noise = torch.randn(1, 80, frames_total)",
                            "vc_hift_phase_init = (torch.rand(1, 9, 1) * 2 - 1) * pi, then [:, 0] = 0",
                            "vc_hift_sine_noise = torch.randn(1, 9, 480 * frames_out)"],
                  "forced_by": "torch.randn_like patched by shape (CFM z, SineGen noise; SourceModuleHnNSF's "
                               "discarded randn_like(uv) -> zeros) and chatterbox.models.s3gen.hifigan.Uniform "
                               "patched (SineGen phase_vec), as s3gen_side.reference_flow / reference_hift"},
        "checks": checks,
        "limits": limits_facts(manifest),
        "long_sources": long_facts,
        "versions": {"chatterbox_tts": __import__("importlib.metadata").metadata.version("chatterbox-tts"),
                     "s3tokenizer": __import__("importlib.metadata").metadata.version("s3tokenizer"),
                     "torch": torch.__version__.split("+")[0], "librosa": librosa.__version__,
                     "onnxruntime": __import__("onnxruntime").__version__},
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "how": how[k]} for k, v in tensors.items()},
    }
    save_safetensors(gdir / "vc.safetensors", tensors, metadata={"format": "chatterbox-ort-vc-goldens", "version": "1"})
    (gdir / "vc.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    total = (gdir / "vc.safetensors").stat().st_size + (gdir / "vc.json").stat().st_size
    log(f"{gdir}/vc.safetensors + vc.json: {total / 1e3:.0f} kB")
    for k, v in tensors.items():
        log(f"  {k}: {list(v.shape)} {v.dtype}")
    if total > MAX_BYTES:
        raise ExportError(f"vc goldens are {total} bytes, over {MAX_BYTES}")
    bundle_bytes = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    log(f"{bundle}: {bundle_bytes / 1e6:.3f} MB in all")
    if bundle_bytes > BUNDLE_MAX_BYTES:
        raise ExportError(f"{bundle} is {bundle_bytes} bytes with the vc goldens, over {BUNDLE_MAX_BYTES} "
                          "(tests/bundle_tiny.rs)")
    return 0


def limits_facts(manifest: dict) -> dict:
    return {
        "s3gen_max_tokens_manifest": manifest["config"]["s3gen"]["max_tokens"],
        "s3gen_max_tokens_meaning": (
            "config.s3gen.max_tokens (2500, prompt tokens included) is the bundle's stated cap, taken from the "
            "upstream EspnetRelPositionalEncoding default max_len 5000 positions = 2500 tokens x 2 frames. The "
            "reference does NOT enforce it: EspnetRelPositionalEncoding.extend_pe grows the table for longer "
            "inputs, and the bundle's flow_encoder graph computes its relative-position table for the actual "
            "length (checks.flow_encoder_onnx_over_cap: 2501 tokens in onnxruntime against the reference encoder; "
            "3000 tokens were also tried once: rel error 4e-7). "
            "Nothing else in S3Gen has a length limit, but every attention (flow encoder conformer, 4 transformer "
            "blocks per U-Net block of the CFM estimator, static_chunk_size 0 = full attention) is O(frames^2) "
            "over prompt + source frames, and HiFT/Perth are linear. With a full 10 s target prompt (250 tokens) "
            "the cap leaves 2250 source tokens = 90 s of source per S3Gen call."),
        "s3_tokenizer_short_path": (
            "ChatterboxVC.generate calls self.s3gen.tokenizer(audio_16) with audio_16 a [1, n] tensor; "
            "S3Tokenizer.forward iterates over dim 0, so this is exactly S3Tokenizer.forward([wav]) (no pad() to "
            "a 40 ms multiple, no max_len truncation). log-mel frames = n // 160 (the last STFT frame dropped); "
            "the floor max(log_spec) - 8 is over the whole clip; quantize() takes the short path when frames <= "
            "3000 (n < 480160 samples, i.e. <= 30 s): one encoder pass, tokens = ceil(ceil(frames / 2) / 2). "
            "The bundle's s3_tokenizer graph is this short path (documented for <= 30 s)."),
    }


def long_rule_count(frames: int) -> int:
    """Token count of S3Tokenizer.quantize (short or long path) for a log-mel length."""
    def c(n):
        return ((n + 1) // 2 + 1) // 2

    if frames <= 3000:
        return c(frames)
    starts = list(range(0, frames, 2600))
    total = 0
    for i, s in enumerate(starts):
        k = c(min(s + 3000, frames) - s)
        total += max(0, k - (50 if i > 0 else 0) - (50 if i < len(starts) - 1 else 0))
    return total


def _long_case(s3, base: np.ndarray, seconds: float, run) -> dict:
    """Reference tokens of `base` tiled to `seconds` (16 kHz), and two per-window emulations."""
    from s3tokenizer.utils import merge_tokenized_segments

    n = int(round(seconds * S3_SR))
    wav = np.tile(base, int(np.ceil(n / len(base))))[:n].astype(np.float32)
    tok = s3.tokenizer
    with torch.inference_mode():
        ref_tok = tok(torch.from_numpy(wav)[None])[0].long()
        # emulation A: the reference's whole-clip log-mel (one global floor) cut into the same windows, each
        # window encoded alone and unpadded (are the zero padding + mask of short windows and batching neutral?)
        mel = tok.log_mel_spectrogram(torch.from_numpy(wav)[None])[0]  # [128, T]
        frames = mel.shape[1]
        segs_a, segs_b, starts = [], [], []
        for start in range(0, frames, 2600):
            end = min(start + 3000, frames)
            h, hl = tok.encoder(mel[:, start:end][None], torch.tensor([end - start]))
            segs_a.append(tok.quantizer.encode(h)[0, : int(hl[0])].tolist())
            # emulation B: the bundle's s3_tokenizer graph on the window's 16 kHz samples (its own floor and
            # reflect-padded STFT edges)
            segs_b.append(run("s3_tokenizer", wav=wav[None, start * 160: end * 160])[0][0].tolist())
            starts.append(start)
    r = ref_tok[0].numpy()

    def diff(x):
        x = np.asarray(x)
        return int((x[: len(r)] != r[: len(x)]).sum()) + abs(len(x) - len(r))

    assert len(r) == long_rule_count(frames), (seconds, len(r), long_rule_count(frames))
    return {"tokens": ref_tok, "samples": n, "frames": int(frames), "n_tokens": int(len(r)),
            "plain_rule_tokens": ((frames + 1) // 2 + 1) // 2, "window_starts_frames": starts,
            "window_frames": [min(s_ + 3000, frames) - s_ for s_ in starts],
            "emulation_global_mel_unpadded_windows_tokens_differing":
                diff(merge_tokenized_segments(segs_a, overlap=4, token_rate=25)),
            "emulation_s3_tokenizer_graph_per_window_tokens_differing":
                diff(merge_tokenized_segments(segs_b, overlap=4, token_rate=25))}


def long_source_facts(s3, ref_wav: Path, run):
    """The reference tokenizer past 30 s (S3Tokenizer.quantize's long-audio path): goldens for
    two lengths, the count rule checked on several lengths, and how close per-window
    emulations come."""
    import librosa

    base, _ = librosa.load(str(ref_wav), sr=S3_SR)
    recipe = "S3Gen.tokenizer(x[None]) with x = np.tile(b, ceil(n / len(b)))[:n], b = librosa.load(goldens/ref.wav, sr=16000)[0]"
    cases = {name: _long_case(s3, base, sec, run) for name, sec in LONG_CASES.items()}
    examples = []
    for sec in (30.0, 30.01, 31.0, 52.5, 53.0, 56.5, 60.0, 72.0):
        m = int(round(sec * S3_SR))
        w = np.tile(base, int(np.ceil(m / len(base))))[:m].astype(np.float32)
        with torch.inference_mode():
            k = int(s3.tokenizer(torch.from_numpy(w)[None])[0].shape[1])
        fr = m // 160
        examples.append({"seconds": sec, "samples": m, "frames": fr, "reference_tokens": k,
                         "plain_rule_tokens": ((fr + 1) // 2 + 1) // 2, "long_rule_tokens": long_rule_count(fr)})
        if k != long_rule_count(fr):
            raise ExportError(f"token count rule wrong at {sec} s: reference {k}, rule {long_rule_count(fr)}")

    facts = {
        "reference_long_path": (
            "S3Tokenizer.quantize: if log-mel frames > 3000 (> 30 s) it calls _quantize_mixed_batch: the log-mel of "
            "the WHOLE clip (one global floor max - 8) is cut into windows of 3000 frames (30 s) starting every 2600 "
            "frames (26 s; 4 s overlap) while start < frames; a window shorter than 3000 frames is zero-padded to "
            "3000 and masked by its length; all windows are encoded as one batch; tokens per window = "
            "ceil(ceil(len / 2) / 2); then s3tokenizer.utils.merge_tokenized_segments(overlap=4, token_rate=25): "
            "drop the first 50 tokens of every window but the first and the last 50 of every window but the last, "
            "concatenate. Both ends of an overlap assume full 3000-frame windows: when the last window has L < 400 "
            "frames, the previous window is only 2600 + L long and still drops its last 50 tokens (keeping frames "
            "up to end - 200) while the last window's kept tokens start at its frame 200, so the frames between are "
            "never tokenised: a hole of min(200, 400 - L) frames (up to 2 s) just before the end (the whole last "
            "2 s when L <= 200). The merged sequence is then up to 50 tokens shorter than ceil(ceil(frames / 2) / 2): "
            "for frames > 5200 with frames mod 2600 in [1, 396] (found by counting frames 3001..20000; see "
            "token_count_examples, token_count_rule and the 53 s golden)."),
        "reference_vc_long_source": (
            "ChatterboxVC.generate does not chunk: all source tokens (any length) go to ONE S3Gen.inference call "
            "after the target prompt; the flow encoder's position table grows (extend_pe), attention is full, "
            "so cost and memory grow with the square of (prompt + source) frames. The 2500-token cap of the "
            "manifest is therefore a bundle/engine policy; chunked conversion in the engine is a deviation from "
            "the reference (which would convert e.g. 120 s in one pass)."),
        "token_count_rule": (
            "frames = samples // 160; frames <= 3000: ceil(ceil(frames / 2) / 2); longer: windows [s, min(s + "
            "3000, frames)) for s = 0, 2600, ... < frames, each giving c_i = ceil(ceil(len_i / 2) / 2) tokens, "
            "merged count = sum over windows of max(0, c_i - 50 [not first] - 50 [not last])"),
        "token_count_examples": examples,
        "goldens": {f"vc_long_source_tokens_{name}": {k: v for k, v in c.items() if k != "tokens"}
                    for name, c in cases.items()},
        "emulation_notes": (
            "Both emulations cut the same windows and merge with merge_tokenized_segments. 'global mel, unpadded "
            "windows': the reference log-mel of the whole clip, each window encoded alone and unpadded (0 tokens "
            "differing = the padding, mask and batching are neutral, only the global floor matters). "
            "'s3_tokenizer graph per window': the bundle's graph on the 16 kHz samples of each window "
            "(samples [160 s, 160 e)), so each window has its own log-mel floor and reflect-padded STFT edges: "
            "an engine built on the wav-input graph is close to the reference but not token-exact past 30 s."),
        "recipe": recipe,
    }
    for name, c in cases.items():
        log(f"long source {name}: {c['n_tokens']} tokens (plain rule {c['plain_rule_tokens']}), windows "
            f"{c['window_starts_frames']}; emulation global mel differs in "
            f"{c['emulation_global_mel_unpadded_windows_tokens_differing']}, graph per window in "
            f"{c['emulation_s3_tokenizer_graph_per_window_tokens_differing']}")
    tensors = {f"vc_long_source_tokens_{name}": c["tokens"] for name, c in cases.items()}
    hows = {f"vc_long_source_tokens_{name}": f"{recipe}, n = {c['samples']} ({LONG_CASES[name]} s, the long-audio "
            f"path: windows at frames {c['window_starts_frames']})" for name, c in cases.items()}
    return facts, tensors, hows


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
