"""S3Gen side of the chatterbox-ort exporter: S3 tokenizer, CAM++, S3Gen mel,
flow encoder, CFM estimator, HiFT and the Perth watermarker.

Interface used by export/export_bundle.py:

* `build_s3gen(config, seed, checkpoint, meanflow=False)` -> chatterbox `S3Gen`
  (S3Token2Wav) instance: `tiny` = every submodule shrunk (random, seeded),
  `full` = the upstream architecture (random, seeded), or the weights of
  `<checkpoint>/s3gen.safetensors` (checkpoint may be the folder or the file).
  `meanflow=True` is Turbo's `S3Gen(meanflow=True)` (the estimator's time mixer,
  `<checkpoint>/s3gen_meanflow.safetensors`, loaded strictly as
  `ChatterboxTurboTTS.from_local` does).
* `build_watermarker(config, seed)` -> `perth.PerthImplicitWatermarker`:
  tiny = shrunk PerthNet, random; full = the real shipped Perth weights.
* `export_components(ctx, tts)` -> exports s3_tokenizer, campplus, s3gen_mel,
  flow_encoder, flow_estimator, hift, perth (tts.s3gen, tts.watermarker); for a
  meanflow S3Gen the flow_estimator has the extra input `r` (meanflow end time).
* `s3gen_ref(tts, ref_24k)` -> the S3Gen reference conditioning of a 24 kHz
  clip, the same as `tts.s3gen.embed_ref(ref_24k[:10 s], 24000)` plus the
  16 kHz crop it used internally (`s3gen_ref_16k`).
* `make_goldens(ctx, tts, voice)` -> flow_*, hift_*, wm_* goldens, made with
  the reference PyTorch code paths (noise injected by monkeypatching the
  reference's own random calls).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

try:
    from .common import seeded_init, log
    from . import graph_passes
    from . import s3gen_graphs as graphs
except ImportError:  # script use with export/ on sys.path
    from common import seeded_init, log
    import graph_passes
    import s3gen_graphs as graphs

S3GEN_SR = 24000
S3_SR = 16000
PERTH_SR = 32000
NUM_CODES = 6561
N_HARM = 9
SAMPLES_PER_FRAME = 480

# Tiny architecture (all shrinkable widths / depths); fixed: vocab 6561, FSQ 8x3,
# 80 mels, 24/16 kHz, 2 mel frames per token, 480 samples per frame, 9 harmonics.
TINY = dict(
    tok_state=64, tok_heads=1, tok_layers=2,  # S3Tokenizer head dim must stay 64 (RoPE table)
    cam_m_channels=8, cam_growth=8, cam_bn_size=2, cam_init=32,
    flow_dim=32, flow_heads=2, flow_ff=64, flow_blocks=2,
    est_channels=32, est_head_dim=16, est_heads=2, est_blocks=1, est_mid=2,
    hift_channels=32, f0_channels=32,
    perth_hidden=32, perth_out_scale=0.01,
)


# --------------------------------------------------------------------------- building


def _tiny_s3gen(seed: int, meanflow: bool = False):
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from chatterbox.models.s3gen.utils.mel import mel_spectrogram
    from chatterbox.models.s3gen.xvector import CAMPPlus, FCM, TDNNLayer
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.transformer.upsample_encoder import (
        UpsampleConformerEncoder,
        PreLookaheadLayer,
        Upsample1D,
    )
    from chatterbox.models.s3gen.hifigan import HiFTGenerator
    from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
    from s3tokenizer.model_v2 import ModelConfig, AudioEncoderV2, FSQVectorQuantization

    t = TINY
    s3 = S3Gen.__new__(S3Gen)
    torch.nn.Module.__init__(s3)
    # S3Tokenizer.__init__ ignores its `config` (it builds the full v2 encoder):
    # build it, then swap in a shrunk encoder and quantizer.
    tok = S3Tokenizer("speech_tokenizer_v2_25hz")
    cfg = ModelConfig(n_mels=128, n_audio_state=t["tok_state"], n_audio_head=t["tok_heads"],
                      n_audio_layer=t["tok_layers"], n_codebook_size=NUM_CODES)
    tok.config = cfg
    tok.encoder = AudioEncoderV2(cfg.n_mels, cfg.n_audio_state, cfg.n_audio_head, cfg.n_audio_layer, 2, False)
    tok.quantizer = FSQVectorQuantization(cfg.n_audio_state, cfg.n_codebook_size)
    s3.tokenizer = tok
    s3.mel_extractor = mel_spectrogram
    cam = CAMPPlus(feat_dim=80, embedding_size=192, growth_rate=t["cam_growth"], bn_size=t["cam_bn_size"],
                   init_channels=t["cam_init"], memory_efficient=False)
    cam.head = FCM(feat_dim=80, m_channels=t["cam_m_channels"])
    cam.xvector.tdnn = TDNNLayer(cam.head.out_channels, t["cam_init"], 5, stride=2, dilation=1, padding=-1,
                                 config_str="batchnorm-relu")
    s3.speaker_encoder = cam
    s3.meanflow = meanflow

    d = t["flow_dim"]
    encoder = UpsampleConformerEncoder(
        output_size=d, attention_heads=t["flow_heads"], linear_units=t["flow_ff"], num_blocks=t["flow_blocks"],
        dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1, normalize_before=True,
        input_layer="linear", pos_enc_layer_type="rel_pos_espnet", selfattention_layer_type="rel_selfattn",
        input_size=d, use_cnn_module=False, macaron_style=False,
    )
    # these two are hard-wired to 512 channels upstream
    encoder.pre_lookahead_layer = PreLookaheadLayer(channels=d, pre_lookahead_len=3)
    encoder.up_layer = Upsample1D(channels=d, out_channels=d, stride=2)
    estimator = ConditionalDecoder(
        in_channels=320, out_channels=80, causal=True, channels=[t["est_channels"]], dropout=0.0,
        attention_head_dim=t["est_head_dim"], n_blocks=t["est_blocks"], num_mid_blocks=t["est_mid"],
        num_heads=t["est_heads"], act_fn="gelu", meanflow=meanflow,
    )
    decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
    s3.flow = CausalMaskedDiffWithXvec(input_size=d, encoder=encoder, decoder=decoder)
    s3.resamplers = {}
    s3.mel2wav = HiFTGenerator(
        sampling_rate=S3GEN_SR, base_channels=t["hift_channels"], upsample_rates=[8, 5, 3],
        upsample_kernel_sizes=[16, 11, 7], source_resblock_kernel_sizes=[7, 7, 11],
        source_resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        f0_predictor=ConvRNNF0Predictor(cond_channels=t["f0_channels"]),
    )
    n_trim = S3GEN_SR // 50
    trim_fade = torch.zeros(2 * n_trim)
    trim_fade[n_trim:] = (torch.cos(torch.linspace(torch.pi, 0, n_trim)) + 1) / 2
    s3.register_buffer("trim_fade", trim_fade, persistent=False)
    s3.estimator_dtype = "fp32"
    return s3


def _checkpoint_file(checkpoint: Path, name: str = "s3gen.safetensors") -> Path:
    checkpoint = Path(checkpoint)
    f = checkpoint / name if checkpoint.is_dir() else checkpoint
    if not f.is_file():
        raise FileNotFoundError(f"S3Gen checkpoint file missing: {f}")
    return f


def build_s3gen(config: str, seed: int, checkpoint: Optional[Path] = None, meanflow: bool = False,
                filename: Optional[str] = None, strict: Optional[bool] = None):
    """The reference S3Gen (S3Token2Wav) in eval mode: tiny / full random
    (seeded_init) or loaded from s3gen.safetensors like ChatterboxTTS.from_local.
    meanflow=True: Turbo's S3Gen(meanflow=True), from s3gen_meanflow.safetensors
    (ChatterboxTurboTTS.from_local loads it with strict=True: unused keys are an error).
    `filename` names another checkpoint file (a `.pt` is read with torch.load, weights_only,
    as ChatterboxMultilingualTTS.from_local reads s3gen.pt); `strict` (default: meanflow)
    makes keys S3Gen does not use an error, as a strict load_state_dict does."""
    from chatterbox.models.s3gen import S3Gen

    if config not in ("tiny", "full"):
        raise ValueError(f"unknown config {config!r} (tiny | full)")
    if strict is None:
        strict = meanflow
    if checkpoint is not None:
        if config != "full":
            raise ValueError("a checkpoint needs config 'full'")
        f = _checkpoint_file(checkpoint, filename or ("s3gen_meanflow.safetensors" if meanflow else "s3gen.safetensors"))
        try:
            if f.suffix == ".pt":
                state = torch.load(str(f), map_location="cpu", weights_only=True)
                if not isinstance(state, dict):
                    raise TypeError(f"a {type(state).__name__}, not a state dict")
            else:
                from safetensors.torch import load_file

                state = load_file(str(f))
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"S3Gen checkpoint file malformed: {f}: {type(e).__name__}: {e}") from None
        s3 = S3Gen(meanflow=True) if meanflow else S3Gen()
        missing, unexpected = s3.load_state_dict(state, strict=False)
        # from_local loads with strict=False; the buffers it rebuilds itself may be absent
        ignorable = set(getattr(S3Gen, "ignore_state_dict_missing", ())) | {"trim_fade", "num_batches_tracked"}
        missing = [k for k in missing if not any(k.endswith(i) for i in ignorable)]
        if missing:
            raise RuntimeError(
                f"S3Gen checkpoint file malformed: {f}: {len(missing)} missing weights (e.g. {missing[:3]})"
            )
        if unexpected and strict:  # from_local of Turbo / multilingual loads strictly
            raise RuntimeError(
                f"S3Gen checkpoint file malformed: {f}: {len(unexpected)} keys not in "
                f"{'S3Gen(meanflow=True)' if meanflow else 'S3Gen'} (e.g. {unexpected[:3]})"
            )
        if unexpected:  # ignored by the reference as well
            log(f"WARNING {f}: {len(unexpected)} keys not used by S3Gen (e.g. {unexpected[:3]})")
        return s3.eval()
    if config == "tiny":
        s3 = _tiny_s3gen(seed, meanflow)
    else:
        s3 = S3Gen(meanflow=True) if meanflow else S3Gen()
    seeded_init(s3, seed)
    return s3.eval()


def build_watermarker(config: str, seed: int):
    """perth.PerthImplicitWatermarker: real shipped weights for `full`, a shrunk
    random PerthNet for `tiny` (its output layer scaled down so the random
    residual stays a few dB)."""
    import perth
    from perth.perth_net.perth_net_implicit.model.perth_net import PerthNet
    from perth.perth_net.perth_net_implicit.config import default_hp

    if config == "full":
        wm = perth.PerthImplicitWatermarker()
    elif config == "tiny":
        hp = default_hp._replace(hidden_size=TINY["perth_hidden"])
        net = PerthNet(hp)
        seeded_init(net, seed)
        with torch.no_grad():
            last = net.encoder.layers[-1].conv
            last.weight.mul_(TINY["perth_out_scale"])
            last.bias.mul_(TINY["perth_out_scale"])
        wm = perth.PerthImplicitWatermarker(run_name=None, perth_net=net)
    else:
        raise ValueError(f"unknown config {config!r} (tiny | full)")
    wm.perth_net.eval()
    return wm


# --------------------------------------------------------------------------- test signals


def test_signal(n: int, sr: int, seed: int) -> torch.Tensor:
    """A deterministic speech-like clip [1, n]: a gliding harmonic tone with a
    syllable envelope plus a little noise, peak ~0.5."""
    g = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + g.uniform(0, 6))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum((0.5 / k) * np.sin(k * ph + g.uniform(0, 6)) for k in range(1, 12))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.1 * t + g.uniform(0, 6))
    x = x * env + 0.01 * g.standard_normal(n)
    x = 0.5 * x / (np.abs(x).max() + 1e-9)
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(0)


def _s3(tts):
    return tts.s3gen if hasattr(tts, "s3gen") else tts


# --------------------------------------------------------------------------- export


def _pin_static_dims(ctx, name: str) -> None:
    """Writes the manifest's static sizes into the graph's input / output dims.

    The TorchScript exporter leaves some always-1 batch dims symbolic (e.g.
    'Casttokens_dim_0') after ops it cannot infer through (STFT, reflect-pad
    If, Resize); ctx.export records the observed size (1) in the manifest,
    but the .onnx must say the same (verify_bundle checks it). Only the graph
    proto's value infos change (weights and external data are untouched), then
    the manifest file entry is recomputed."""
    import onnx

    try:
        from .common import file_entry
    except ImportError:
        from common import file_entry

    comp = ctx.components[name]
    path = ctx.out_dir / comp["files"][0]["path"]
    model = onnx.load(str(path), load_external_data=False)
    changed = False
    for kind, vis in (("inputs", model.graph.input), ("outputs", model.graph.output)):
        want = {t["name"]: t["shape"] for t in comp[kind]}
        for vi in vis:
            shape = want.get(vi.name)
            if shape is None:
                continue
            for d, w in zip(vi.type.tensor_type.shape.dim, shape):
                if isinstance(w, int) and not (d.HasField("dim_value") and d.dim_value == w):
                    d.Clear()
                    d.dim_value = w
                    changed = True
                elif isinstance(w, str) and d.dim_param != w:
                    d.Clear()
                    d.dim_param = w
                    changed = True
    if changed:
        onnx.save_model(model, str(path))
        comp["files"][0] = file_entry(path, ctx.out_dir)


def _export(ctx, name, *args, **kwargs) -> None:
    ctx.export(name, *args, **kwargs)
    _pin_static_dims(ctx, name)



@torch.no_grad()
def export_components(ctx, tts) -> None:
    """Exports the seven S3Gen-side components with the tensor names of docs/BUNDLE.md."""
    s3 = _s3(tts)
    wm = tts.watermarker
    g = torch.Generator().manual_seed(ctx.seed + 101)

    # s3_tokenizer: 16 kHz wav -> tokens
    m = graphs.S3TokenizerGraph(s3.tokenizer).eval()
    _export(
        ctx, "s3_tokenizer", m, (test_signal(24000, S3_SR, 1),), ["wav"], ["tokens"],
        {"wav": {1: "samples"}, "tokens": {1: "tokens"}},
        [(test_signal(16000, S3_SR, 2),), (test_signal(37120, S3_SR, 3),)],
    )

    # campplus: 16 kHz wav -> x-vector
    m = graphs.CampplusGraph(s3.speaker_encoder).eval()
    _export(
        ctx, "campplus", m, (test_signal(24000, S3_SR, 4),), ["wav"], ["embedding"],
        {"wav": {1: "samples"}},
        [(test_signal(16000, S3_SR, 5),), (test_signal(41234, S3_SR, 6),)],
    )

    # s3gen_mel: 24 kHz wav -> mel [1, F, 80]
    m = graphs.S3GenMelGraph().eval()
    _export(
        ctx, "s3gen_mel", m, (test_signal(24000, S3GEN_SR, 7),), ["wav"], ["mel"],
        {"wav": {1: "samples"}, "mel": {1: "frames"}},
        [(test_signal(24000, S3GEN_SR, 8),), (test_signal(61337, S3GEN_SR, 9),)],
    )

    # flow_encoder: tokens + x-vector -> mu, spks
    m = graphs.FlowEncoderGraph(s3.flow).eval()

    def tok(n):
        return torch.randint(0, NUM_CODES, (1, n), generator=g)

    def xvec():
        return torch.randn(1, 192, generator=g)

    _export(
        ctx, "flow_encoder", m, (tok(23), xvec()), ["tokens", "speaker_emb"], ["mu", "spks"],
        {"tokens": {1: "tokens"}, "mu": {2: "frames"}},
        [(tok(7), xvec()), (tok(61), xvec())], fp16=True,
    )

    # flow_estimator: one CFM velocity evaluation
    if getattr(s3.flow.decoder.estimator, "meanflow", False):
        _export_meanflow_estimator(ctx, s3.flow.decoder.estimator, g)
    else:
        _export_cfm_estimator(ctx, s3.flow.decoder.estimator, g)

    # hift: mel + SineGen draws -> 24 kHz wav
    m = graphs.HiftGraph(s3.mel2wav).eval()

    def hift_inputs(f):
        mel = torch.randn(1, 80, f, generator=g) - 5.0
        ph = (torch.rand(1, N_HARM, 1, generator=g) * 2 - 1) * np.pi
        ph[:, 0] = 0
        noise = torch.randn(1, N_HARM, SAMPLES_PER_FRAME * f, generator=g)
        return (mel, ph, noise)

    _export(
        ctx, "hift", m, hift_inputs(12), ["mel", "phase_init", "sine_noise"], ["wav"],
        {"mel": {2: "frames"}, "sine_noise": {2: "samples"}, "wav": {1: "samples"}},
        [hift_inputs(5), hift_inputs(33)], fp16=True,
    )

    # perth: 32 kHz wav -> watermarked 32 kHz wav
    m = graphs.PerthGraph(wm.perth_net).eval()
    _export(
        ctx, "perth", m, (test_signal(32000, PERTH_SR, 10),), ["wav"], ["wav_out"],
        {"wav": {1: "samples"}, "wav_out": {1: "out_samples"}},
        [(test_signal(16000, PERTH_SR, 11),), (test_signal(50017, PERTH_SR, 12),)],
    )


def _export_cfm_estimator(ctx, estimator, g) -> None:
    """flow_estimator of the original S3Gen: x, mask, mu, t, spks, cond -> velocity
    (check inputs in the CFG layout, batch 2 and 1)."""
    m = graphs.FlowEstimatorGraph(estimator).eval()

    def est_inputs(b, t, padded=0):
        x = torch.randn(b, 80, t, generator=g)
        mask = torch.ones(b, 1, t)
        if padded:
            mask[-1, :, t - padded:] = 0
        mu = torch.randn(b, 80, t, generator=g)
        tt = torch.rand(b, generator=g)
        spks = torch.randn(b, 80, generator=g)
        cond = torch.randn(b, 80, t, generator=g)
        if b == 2:  # the CFG layout: row 1 is unconditional
            mu[1] = 0
            spks[1] = 0
            cond[1] = 0
            tt[1] = tt[0]
        return (x, mask, mu, tt, spks, cond)

    bt = {0: "batch", 2: "frames"}
    with graphs.fused_attention(estimator):
        _export(
            ctx, "flow_estimator", m, est_inputs(2, 38), ["x", "mask", "mu", "t", "spks", "cond"], ["velocity"],
            {"x": bt, "mask": bt, "mu": bt, "t": {0: "batch"}, "spks": {0: "batch"}, "cond": bt, "velocity": bt},
            # the last: a padded row (the masked attention branch of graph_passes)
            [est_inputs(2, 14), est_inputs(2, 97), est_inputs(1, 30), est_inputs(2, 41, padded=9)],
            fp16=True, graph_pass=graph_passes.apply,
        )


class MeanflowEstimatorGraph(torch.nn.Module):
    """x, mask, mu, t, spks, cond, r -> velocity: one call of Turbo's meanflow
    ConditionalDecoder (t and r both go through the sinusoidal embedding and the
    time MLP, then the time mixer)."""

    def __init__(self, estimator):
        super().__init__()
        self.estimator = estimator

    def forward(self, x, mask, mu, t, spks, cond, r):
        return self.estimator(x, mask, mu, t, spks, cond, r)


def _export_meanflow_estimator(ctx, estimator, g) -> None:
    """flow_estimator of a meanflow S3Gen (Turbo): the original inputs plus `r` [B]
    (the step's end time); batch 1 as basic_euler runs it, batch 2 checked too."""
    m = MeanflowEstimatorGraph(estimator).eval()

    def est_inputs(b, t, padded=0):
        x = torch.randn(b, 80, t, generator=g)
        mask = torch.ones(b, 1, t)
        if padded:
            mask[-1, :, t - padded:] = 0
        mu = torch.randn(b, 80, t, generator=g)
        tt = torch.rand(b, generator=g) * 0.5
        spks = torch.randn(b, 80, generator=g)
        cond = torch.randn(b, 80, t, generator=g)
        r = tt + 0.5
        return (x, mask, mu, tt, spks, cond, r)

    bt = {0: "batch", 2: "frames"}
    with graphs.fused_attention(estimator):
        _export(
            ctx, "flow_estimator", m, est_inputs(2, 38), ["x", "mask", "mu", "t", "spks", "cond", "r"],
            ["velocity"],
            {"x": bt, "mask": bt, "mu": bt, "t": {0: "batch"}, "spks": {0: "batch"}, "cond": bt,
             "r": {0: "batch"}, "velocity": bt},
            # the last: a padded row (the masked attention branch of graph_passes)
            [est_inputs(1, 14), est_inputs(1, 97), est_inputs(2, 30), est_inputs(2, 41, padded=9)],
            fp16=True, graph_pass=graph_passes.apply,
        )


# --------------------------------------------------------------------------- reference helpers


def s3gen_ref(tts, ref_24k) -> dict:
    """S3Gen conditioning of a 24 kHz clip exactly as prepare_conditionals makes
    it: crop to 10 s, embed_ref (prompt_token [1, N], prompt_feat [1, 2N, 80],
    embedding [1, 192]) plus `s3gen_ref_16k` [1, n] = the crop resampled by the
    same torchaudio resampler embed_ref uses."""
    from chatterbox.models.s3gen.s3gen import get_resampler

    s3 = _s3(tts)
    wav = ref_24k.detach().cpu().numpy() if torch.is_tensor(ref_24k) else np.asarray(ref_24k)
    wav = wav.reshape(-1)[: 10 * S3GEN_SR].astype(np.float32)
    ref = s3.embed_ref(wav, S3GEN_SR, device="cpu")
    with torch.no_grad():
        ref16 = get_resampler(S3GEN_SR, S3_SR, torch.device("cpu"))(torch.from_numpy(wav).unsqueeze(0))
    return {
        "s3gen_ref_16k": ref16,
        "prompt_token": ref["prompt_token"],
        "prompt_feat": ref["prompt_feat"],
        "embedding": ref["embedding"],
    }


def _voice_gen(tts, voice) -> dict:
    """prompt_token / prompt_feat / embedding from an embed_ref dict, a
    voice.safetensors-style dict (gen.*) or tts.conds.gen."""
    if voice is None:
        voice = tts.conds.gen
    out = {}
    for k in ("prompt_token", "prompt_feat", "embedding"):
        v = voice.get(k, voice.get(f"gen.{k}"))
        if v is None:
            raise KeyError(f"voice lacks {k} (or gen.{k})")
        out[k] = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v)
    out["prompt_token"] = out["prompt_token"].long().reshape(1, -1)
    out["prompt_feat"] = out["prompt_feat"].float().reshape(1, -1, 80)
    out["embedding"] = out["embedding"].float().reshape(1, -1)
    # docs/BUNDLE.md: gen.prompt_feat is [1, 2N, 80]. embed_ref truncates the
    # tokens to mel_frames // 2 but leaves an odd mel frame in place (the
    # reference then returns 2M - 1 frames); the bundle's voice drops it.
    n = out["prompt_token"].shape[1]
    if out["prompt_feat"].shape[1] < 2 * n:
        raise ValueError(f"voice prompt_feat has {out['prompt_feat'].shape[1]} frames < 2 x {n} tokens")
    out["prompt_feat"] = out["prompt_feat"][:, : 2 * n].contiguous()
    return out


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def reference_flow(s3, tokens, gen, noise, n_steps=10):
    """Reference CausalMaskedDiffWithXvec.inference (finalize=True) with the
    CFM's `torch.randn_like(mu)` returning `noise`; returns (mel, mu, spks)."""
    captured = {}

    def pre_hook(_mod, args, kwargs):
        captured.update(kwargs)

    real_randn_like = torch.randn_like

    def fake_randn_like(t, *a, **k):
        if tuple(t.shape) == tuple(noise.shape):
            return noise.clone().to(t.dtype)
        return real_randn_like(t, *a, **k)

    h = s3.flow.decoder.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with _patched(torch, "randn_like", fake_randn_like):
            mel, _ = s3.flow.inference(
                token=tokens, token_len=torch.tensor([tokens.shape[1]]),
                prompt_token=gen["prompt_token"], prompt_token_len=torch.tensor([gen["prompt_token"].shape[1]]),
                prompt_feat=gen["prompt_feat"], prompt_feat_len=None, embedding=gen["embedding"],
                finalize=True, n_timesteps=n_steps,
            )
    finally:
        h.remove()
    return mel.clone(), captured["mu"].clone(), captured["spks"].clone()


def reference_hift(s3, mel, phase_init, sine_noise):
    """Reference HiFTGenerator.inference with SineGen's Uniform draw returning
    `phase_init` and its randn_like returning `sine_noise` (the discarded
    randn_like(uv) of SourceModuleHnNSF returns zeros)."""
    from chatterbox.models.s3gen import hifigan

    class _FixedUniform:
        def __init__(self, low, high):
            pass

        def sample(self, sample_shape):
            assert tuple(sample_shape) == tuple(phase_init.shape), (sample_shape, phase_init.shape)
            return phase_init.clone()

    real_randn_like = torch.randn_like

    def fake_randn_like(t, *a, **k):
        if tuple(t.shape) == tuple(sine_noise.shape):
            return sine_noise.clone().to(t.dtype)
        if t.shape[-1] == 1:  # SourceModuleHnNSF's discarded noise branch
            return torch.zeros_like(t)
        return real_randn_like(t, *a, **k)

    with _patched(hifigan, "Uniform", _FixedUniform), _patched(torch, "randn_like", fake_randn_like):
        wav, _ = s3.mel2wav.inference(speech_feat=mel, cache_source=torch.zeros(1, 1, 0))
    return wav.clone()


def reference_perth_32k(wm, wav_32k: np.ndarray) -> np.ndarray:
    """The 32 kHz core of PerthImplicitWatermarker.apply_watermark (the code
    between its two resamplings), as the reference runs it."""
    net = wm.perth_net
    with torch.no_grad():
        sig = torch.from_numpy(np.ascontiguousarray(wav_32k, dtype=np.float32))
        magspec, phase = net.ap.signal_to_magphase(sig)
        wm_mag, _ = net.encoder(magspec[None])
        out = net.ap.magphase_to_signal(wm_mag[0], phase)
    return out.numpy()


def hift_watermark_goldens(ctx, tts, mel, g):
    """hift_phase_init, hift_sine_noise (drawn from `g` in that order), hift_wav,
    wm_input_24k, wm_output_24k, wm_input_32k, wm_output_32k for the mel [1, 80, F]
    (the reference HiFT, trim-fade and Perth); returns (wav, x24, x32, out24, out32)."""
    import librosa

    s3 = _s3(tts)
    f = mel.shape[2]
    phase = (torch.rand(1, N_HARM, 1, generator=g) * 2 - 1) * np.pi
    phase[:, 0] = 0
    sine_noise = torch.randn(1, N_HARM, SAMPLES_PER_FRAME * f, generator=g)
    wav = reference_hift(s3, mel, phase, sine_noise)
    ctx.add_golden("hift_phase_init", phase, "SineGen phase_vec: uniform [-pi, pi) (harmonic 0 = 0), injected by "
                   "patching hifigan.Uniform")
    ctx.add_golden("hift_sine_noise", sine_noise, "SineGen randn_like(sine_waves), standard normal, injected by "
                   "patching torch.randn_like")
    ctx.add_golden("hift_wav", wav, "reference HiFTGenerator.inference(flow_mel) with those draws, before the trim-fade")
    wm = tts.watermarker
    x24 = wav[0].clone()
    x24[: len(s3.trim_fade)] *= s3.trim_fade
    x24 = x24.numpy().astype(np.float32)
    out24 = wm.apply_watermark(x24, sample_rate=S3GEN_SR)
    x32 = librosa.resample(x24, orig_sr=S3GEN_SR, target_sr=PERTH_SR)
    out32 = reference_perth_32k(wm, x32)
    ctx.add_golden("wm_input_24k", x24[None], "hift_wav with the reference trim-fade (20 ms zeros, 20 ms raised cosine)")
    ctx.add_golden("wm_output_24k", np.asarray(out24, dtype=np.float32)[None],
                   "PerthImplicitWatermarker.apply_watermark(wm_input_24k, 24000) end to end (librosa soxr_hq resampling)")
    ctx.add_golden("wm_input_32k", x32.astype(np.float32)[None],
                   "librosa.resample(wm_input_24k, 24000, 32000), as apply_watermark does")
    ctx.add_golden("wm_output_32k", out32.astype(np.float32)[None],
                   "the 32 kHz core of apply_watermark on wm_input_32k (= the perth graph); length 320 * floor(n / 320)")
    return wav, x24, x32, out24, out32


@torch.no_grad()
def make_goldens(ctx, tts, voice=None, n_tokens: int = 24) -> dict:
    """flow_tokens, flow_mu, flow_noise, flow_mel, hift_phase_init,
    hift_sine_noise, hift_wav, wm_input_32k, wm_output_32k, wm_input_24k,
    wm_output_24k (docs/BUNDLE.md). `voice`: the S3Gen conditioning (embed_ref
    dict, gen.* dict, or None for tts.conds.gen)."""
    s3 = _s3(tts)
    gen = _voice_gen(tts, voice)
    n_prompt = gen["prompt_token"].shape[1]
    seed = ctx.seed
    g = torch.Generator().manual_seed(seed + 7001)

    tokens = torch.randint(0, NUM_CODES, (1, n_tokens), generator=g)
    frames = 2 * (n_prompt + n_tokens)
    noise = torch.randn(1, 80, frames, generator=g)
    mel, mu, spks = reference_flow(s3, tokens, gen, noise)
    assert mu.shape == (1, 80, frames) and mel.shape == (1, 80, 2 * n_tokens), (mu.shape, mel.shape)
    ctx.add_golden("flow_tokens", tokens, f"torch.randint(0, 6561, (1, {n_tokens})) with Generator seed {seed + 7001}; "
                   "prompt = s3gen_prompt_tokens")
    ctx.add_golden("flow_mu", mu, "mu the reference CausalMaskedDiffWithXvec.inference (finalize=True) passes to its "
                   "CFM decoder for [s3gen_prompt_tokens | flow_tokens] with the voice's xvector")
    ctx.add_golden("flow_noise", noise, f"the CFM start noise z (randn_like(mu) patched to return it); drawn with "
                   f"torch.randn(1, 80, {frames}) after flow_tokens from the same Generator")
    ctx.add_golden("flow_mel", mel, "reference flow.inference output: 10 Euler steps, cosine schedule, CFG 0.7, "
                   "prompt cond = prompt_mel, prompt frames removed")

    wav, x24, x32, out24, out32 = hift_watermark_goldens(ctx, tts, mel, g)
    f = mel.shape[2]
    log(f"s3gen goldens: prompt {n_prompt} + {n_tokens} tokens, hift {wav.shape[1]} samples")
    return {
        "flow": {"prompt_tokens": n_prompt, "prompt_frames": 2 * n_prompt, "new_tokens": n_tokens, "steps": 10,
                 "cfg_rate": 0.7, "t_scheduler": "cosine", "generator_seed": seed + 7001,
                 "draw_order": "flow_tokens, flow_noise, hift_phase_init, hift_sine_noise"},
        "hift": {"frames": int(f), "samples": int(wav.shape[1])},
        "watermark": {"input_24k": int(x24.shape[0]), "input_32k": int(x32.shape[0]), "output_32k": int(out32.shape[0]),
                      "output_24k": int(np.asarray(out24).shape[0]), "resampler": "librosa.resample (soxr_hq)"},
    }
