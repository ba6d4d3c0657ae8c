#!/usr/bin/env python3
"""The in-framework baseline: the reference PyTorch Chatterbox (chatterbox-tts 0.1.7)
synthesizing with the origin's own memory methods, measured like `chatterbox-ort bench`.

    python benches/baseline_torch.py --bundle DIR [--modes torch-resident,torch-offload]
        [--runs N] [--tokens T] [--device auto|cpu|cuda] [--threads N] --out baseline.json

Run it with the export venv (~/.cache/chatterbox-ort/export-venv/bin/python): it imports
the model builders of export/ (`export_bundle.build_tts`, or `turbo_side.build_tts` for a
bundle of the turbo family), so the weights are the bundle's own (the seeded random weights
of `export_bundle.py [--family turbo] --seed S`, family, config and seed read from the
bundle's manifest; a bundle exported from a checkpoint is not supported here).

Families (the manifest's `model.family`):

* `original`: `ChatterboxTTS.generate`, stages `t3` (`T3.inference`), `s3gen`
  (`S3Gen.flow_inference`: 10 Euler steps with CFG), `vocoder` (`S3Gen.hift_inference`)
  and `watermark` (`apply_watermark`). Reports written before 2026-12-02 have `s3gen` =
  `S3Gen.inference` (flow + HiFT) and no `vocoder` / `watermark` for this family.
* `turbo`: `ChatterboxTurboTTS.generate`, stages `t3` (`T3.inference_turbo`), `s3gen`
  (`S3Gen.flow_inference`: meanflow, 2 steps), `vocoder` (`S3Gen.hift_inference`) and
  `watermark` (`apply_watermark`), plus `t3_prefill` (up to the first draw) and
  `t3_per_token` (the rest of T3 over T: one decoder step per token). The tokenizer is the
  bundle's tokenizer.json (loaded with `turbo_side.load_tokenizer`, ids checked against the
  file); the 3 silence tokens `generate` appends reach S3Gen after the T forced ones (checked).

Modes, each in a fresh process (this script re-runs itself with `--worker MODE`):

* `torch-resident`: every module loaded on the device; `ChatterboxTTS.generate` as is.
* `torch-offload`: the origin's method of giving memory back between stages.
  - With CUDA: modules live on the CPU; before T3 `t3.to("cuda")`, after it
    `t3.to("cpu")` + `torch.cuda.empty_cache()`; the same around S3Gen (the
    `.to()` moves of the seed report, applied per stage).
  - CPU only (no device to move to): drop-and-reload. A module's weights are
    replaced by meta tensors after its stage and loaded back from its state-dict
    file (safetensors) before it, the CPU analogue of re-creating a session. The
    output says so.

Exactly T speech tokens per synthesis: a forward hook on `t3.speech_head` gives every
non-speech token (>= 6561: stop, start, the rest) a logit of -1e30 for the first T steps
and lets only the stop token through at step T + 1, so the reference `T3.inference` loop
(Turbo: `T3.inference_turbo`, whose first draw comes from the prefill), sampler included,
runs unchanged and yields T tokens (the Rust engine's `min_new_tokens` does the same
suppression). Turbo draws at most 1 + 1000 tokens, so T <= 1000 there.

Output: a report in the JSON schema of `chatterbox-ort bench` (`chatterbox-ort-bench/1`),
merged with `chatterbox-ort bench --baseline baseline.json`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMA = "chatterbox-ort-bench/1"
SPEECH_CODES = 6561
SUPPRESSED_LOGIT = -1e30
DEFAULT_TEXT = "Memory is the treasury and guardian of all things, and speech is its most faithful messenger."
DEFAULT_WEIGHTS = Path.home() / ".cache" / "chatterbox-ort" / "torch-baseline"
# Turbo: inference_turbo draws one token from the prefill, then at most max_gen_len (1000) more.
TURBO_MAX_TOKENS = 1000
# The state-dict files of a family's cache, named as its checkpoint names them (so the
# family's build_tts loads them as a checkpoint for config `full`).
WEIGHT_FILES = {
    "original": {"ve": "ve.safetensors", "t3": "t3_cfg.safetensors", "s3gen": "s3gen.safetensors"},
    "turbo": {"ve": "ve.safetensors", "t3": "t3_turbo_v1.safetensors", "s3gen": "s3gen_meanflow.safetensors"},
}
# GPT-2's token embedding: from_local loads it (strictly) and deletes it, inputs are always
# embeddings; the cache holds a zero placeholder only so that the strict load passes.
TURBO_UNUSED_T3_KEYS = ("tfmr.wte.weight",)


# ----------------------------------------------------------------------------- /proc


def _status_kib(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    return _status_kib("VmRSS:") * 1024


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM:") * 1024


def reset_peak_rss() -> bool:
    """VmHWM := current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "ram_bytes": ram, "kernel": platform.release()}


# ----------------------------------------------------------------------------- model


def read_manifest(bundle: Path) -> dict:
    with open(bundle / "manifest.json") as f:
        return json.load(f)


def bundle_origin(manifest: dict) -> tuple[str, int]:
    model = manifest["model"]
    origin = model.get("origin", {})
    if origin.get("kind") != "random":
        raise SystemExit(f"baseline_torch: bundle origin {origin} is not seeded random weights; "
                         "only random bundles are rebuilt here")
    return model["config"], int(origin["seed"])


def bundle_family(manifest: dict) -> str:
    family = manifest["model"].get("family", "original")
    if family not in WEIGHT_FILES:
        raise SystemExit(f"baseline_torch: bundle family {family!r} is not supported (original | turbo)")
    return family


def weights_key(manifest: dict) -> str:
    """The cache folder name under --weights-dir: family + config + seed (the original
    family keeps its earlier name `CONFIG-seedS`)."""
    config, seed = bundle_origin(manifest)
    family = bundle_family(manifest)
    return f"{config}-seed{seed}" if family == "original" else f"{family}-{config}-seed{seed}"


def turbo_tokenizer(bundle: Path, folder: Path, texts=()):
    """The bundle's tokenizer.json as a transformers tokenizer, loaded like from_local
    (`turbo_side.load_tokenizer`: AutoTokenizer.from_pretrained(folder), pad = eos): `folder`
    gets the file plus the tokenizer_config.json / special_tokens_map.json that turbo_side
    writes for GPT-2 (model_max_length 1024). The ids are checked against the file itself
    (`tokenizers.Tokenizer`) on `texts`, the tags and turbo_side's test strings."""
    import shutil

    import turbo_side
    from tokenizers import Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle / "tokenizer.json", folder / "tokenizer.json")
    special = {"bos_token": turbo_side.ENDOFTEXT, "eos_token": turbo_side.ENDOFTEXT, "unk_token": turbo_side.ENDOFTEXT}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": turbo_side.TOKENIZER_MAX_LENGTH,
         "add_prefix_space": False, "add_bos_token": False, **special}, indent=2))
    tok = turbo_side.load_tokenizer(folder)
    ref = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    cases = tuple(texts) + (turbo_side.GOLDEN_TEXT,) + turbo_side.TOKENIZER_CASES + tuple(turbo_side.TAGS)
    for text in cases:
        got = tok(text, truncation=True).input_ids
        want = ref.encode(text).ids[:turbo_side.TOKENIZER_MAX_LENGTH]
        if got != want:
            raise RuntimeError(f"{bundle / 'tokenizer.json'}: the transformers tokenizer gives other ids on {text!r}: "
                               f"{got[:12]} vs {want[:12]}")
    return tok


def build_turbo(bundle: Path, config: str, seed: int, checkpoint: Path | None, tok_dir: Path, texts=()):
    """turbo_side.build_tts with the bundle's tokenizer (random weights, or the cached
    state dicts as a checkpoint folder for config `full`)."""
    import turbo_side

    turbo_tokenizer(bundle, tok_dir, texts)
    return turbo_side.build_tts(config, seed, checkpoint, tok_dir)


def prepare_weights(bundle: Path, weights_dir: Path) -> None:
    """Builds the bundle's seeded models once and saves their state dicts, so each
    mode's process loads files (like ChatterboxTTS.from_local) instead of re-drawing
    800 M random numbers."""
    sys.path.insert(0, str(REPO / "export"))
    import export_bundle
    import torch
    from safetensors.torch import save_file

    manifest = read_manifest(bundle)
    config, seed = bundle_origin(manifest)
    if bundle_family(manifest) == "turbo":
        return prepare_turbo_weights(bundle, weights_dir, config, seed)
    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tts = export_bundle.build_tts(config, seed, None, bundle / "tokenizer.json")
    for name, module in (("ve", tts.ve), ("t3_cfg", tts.t3), ("s3gen", tts.s3gen)):
        state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        save_file(state, str(weights_dir / f"{name}.safetensors"))
    (weights_dir / "origin.json").write_text(json.dumps({"config": config, "seed": seed}))


def prepare_turbo_weights(bundle: Path, weights_dir: Path, config: str, seed: int) -> None:
    """The Turbo models of turbo_side.build_tts, saved under the names of a Turbo
    checkpoint (ve, t3_turbo_v1, s3gen_meanflow .safetensors)."""
    import tempfile

    import torch
    from safetensors.torch import save_file

    weights_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="cbx-baseline-tok-") as tmp:
        tts = build_turbo(bundle, config, seed, None, Path(tmp))
    files = WEIGHT_FILES["turbo"]
    for name, module in (("ve", tts.ve), ("t3", tts.t3), ("s3gen", tts.s3gen)):
        state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
        if name == "t3":
            cfg = tts.t3.cfg
            state[TURBO_UNUSED_T3_KEYS[0]] = torch.zeros(cfg.vocab_size, cfg.n_embd)
        save_file(state, str(weights_dir / files[name]))
    (weights_dir / "origin.json").write_text(json.dumps({"family": "turbo", "config": config, "seed": seed}))


def weights_ready(weights_dir: Path, config: str, seed: int, family: str = "original") -> bool:
    try:
        o = json.loads((weights_dir / "origin.json").read_text())
    except (OSError, ValueError):
        return False
    want = {"config": config, "seed": seed} if family == "original" else {"family": family, "config": config, "seed": seed}
    return o == want and all((weights_dir / f).is_file() for f in WEIGHT_FILES[family].values())


def load_into(module, path: Path, skip=()) -> None:
    """Loads a state-dict file into `module`, replacing its tensors (assign=True);
    the keys in `skip` are not read."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    if skip:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys() if k not in skip}
    else:
        state = load_file(str(path))
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    if unexpected:
        raise RuntimeError(f"{path}: unexpected keys {unexpected[:3]}")
    still_meta = [n for n, p in module.named_parameters() if p.device == torch.device("meta")]
    if still_meta:
        raise RuntimeError(f"{path}: parameters not restored: {still_meta[:3]}")


def drop_weights(module) -> None:
    """Replaces every parameter and persistent buffer by a meta tensor of the same
    shape: the memory goes back, the module keeps its structure for `load_into`."""
    import torch

    for mod in module.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None:
                mod._parameters[name] = torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
        for name, b in list(mod._buffers.items()):
            if b is not None and name not in mod._non_persistent_buffers_set:
                mod._buffers[name] = torch.empty_like(b, device="meta")


def module_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def load_voice(bundle: Path, device: str, exaggeration: float, family: str = "original"):
    """The bundle's default voice (voice.safetensors) as the reference Conditionals
    (tts_turbo's Conditionals for Turbo, built the same way; its T3 ignores emotion_adv)."""
    import torch
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from safetensors.torch import load_file

    if family == "turbo":
        from chatterbox.tts_turbo import Conditionals
    else:
        from chatterbox.tts import Conditionals

    v = load_file(str(bundle / "voice.safetensors"))
    t3 = T3Cond(speaker_emb=v["t3.speaker_emb"], cond_prompt_speech_tokens=v["t3.cond_prompt_speech_tokens"],
                emotion_adv=exaggeration * torch.ones(1, 1, 1))
    tok = v["gen.prompt_token"].long()
    gen = {"prompt_token": tok, "prompt_token_len": torch.tensor([tok.shape[1]]),
           "prompt_feat": v["gen.prompt_feat"].float(), "prompt_feat_len": None,
           "embedding": v["gen.embedding"].float()}
    return Conditionals(t3, gen).to(device)


class FixedLength:
    """Forward hook on `t3.speech_head`: the first `tokens` sampling steps can only
    draw speech codes, the next one only the stop token. Call `reset()` per synthesis."""

    def __init__(self, tokens: int, stop: int):
        self.tokens, self.stop, self.calls = tokens, stop, 0

    def reset(self) -> None:
        self.calls = 0

    def __call__(self, _module, _inputs, out):
        step = self.calls
        self.calls += 1
        out = out.clone()
        if step < self.tokens:
            out[..., SPEECH_CODES:] = SUPPRESSED_LOGIT
        else:
            keep = out[..., self.stop].clone()
            out[...] = SUPPRESSED_LOGIT
            out[..., self.stop] = keep.clamp(min=0.0)
        return out


# ----------------------------------------------------------------------------- worker


class Stages:
    """Brings a module in before its stage and sends it out after, per mode; counts
    what it did for the run metrics."""

    def __init__(self, mode: str, device: str, weights: dict, skip: dict | None = None):
        self.mode, self.device, self.weights = mode, device, weights
        self.skip = skip or {}
        self.reset()

    def reset(self) -> None:
        self.created = self.destroyed = self.transfers = self.transfer_bytes = 0
        self.create_s = 0.0
        self.offloaded = set()

    def _sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()

    def enter(self, name: str, module) -> None:
        if self.mode != "torch-offload":
            return
        t = time.perf_counter()
        if self.device == "cuda":
            module.to("cuda")
            self._sync()
            self.transfers += 1
            self.transfer_bytes += module_bytes(module)
        else:
            load_into(module, self.weights[name], self.skip.get(name, ()))
            self.created += 1
        self.create_s += time.perf_counter() - t

    def leave(self, name: str, module) -> None:
        if self.mode != "torch-offload":
            return
        import torch

        t = time.perf_counter()
        if self.device == "cuda":
            module.to("cpu")
            torch.cuda.empty_cache()
            self._sync()
            self.transfers += 1
            self.transfer_bytes += module_bytes(module)
        else:
            drop_weights(module)
            gc.collect()
            self.destroyed += 1
        self.offloaded.add(name)
        self.create_s += time.perf_counter() - t


def worker(args) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "export"))
    torch.set_num_threads(args.threads)
    bundle = args.bundle
    manifest = read_manifest(bundle)
    config, seed = bundle_origin(manifest)
    family = bundle_family(manifest)
    gen_cfg = manifest.get("generation", {})
    exaggeration = float(gen_cfg.get("exaggeration", 0.5))
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    notes = []
    if device == "cpu" and args.worker == "torch-offload":
        notes.append("no CUDA device: torch-offload is drop-and-reload (weights to meta tensors after a stage, "
                     "reloaded from their safetensors file before it), the CPU analogue of .to('cpu')/.to('cuda') "
                     "moves; session figures count these reloads")
    if device == "cpu":
        notes.append("CPU only: no transfers or device memory to measure")
    if family == "turbo":
        notes.append("family turbo: ChatterboxTurboTTS.generate (chatterbox-tts 0.1.7) as is, with the bundle's "
                     "sampler settings; T3 (GPT-2) attention: sdpa as set by export/turbo_side.build_t3; T forced by "
                     "a hook on t3.speech_head; S3Gen got T + 3 tokens (the appended S3GEN_SIL); stage 's3gen' = "
                     "S3Gen.flow_inference (meanflow), 'vocoder' = S3Gen.hift_inference, 'watermark' = "
                     "apply_watermark, 't3_per_token' = (t3 - t3_prefill) / T")
    else:
        notes.append("ChatterboxTTS.generate (chatterbox-tts 0.1.7) as is; T3 attention: "
                     "sdpa as set by export/t3_side.build_t3; T forced by a hook on t3.speech_head; stage 's3gen' = "
                     "S3Gen.flow_inference (10 Euler steps, CFG), 'vocoder' = S3Gen.hift_inference, 'watermark' = "
                     "apply_watermark")

    import tempfile

    import export_bundle
    import s3gen_side
    import t3_side
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.tts import ChatterboxTTS

    rss_before = rss_bytes()
    t0 = time.perf_counter()
    weights_dir = args.weights_dir / weights_key(manifest)
    files = WEIGHT_FILES[family]
    skip = {}
    if family == "turbo":
        # config full: the cached state dicts, loaded like ChatterboxTurboTTS.from_local
        with tempfile.TemporaryDirectory(prefix="cbx-baseline-tok-") as tmp:
            tts = build_turbo(bundle, config, seed, weights_dir if config == "full" else None, Path(tmp),
                              texts=(args.text,))
        skip = {"t3": TURBO_UNUSED_T3_KEYS}
    elif config == "full":
        # load the saved state dicts, like ChatterboxTTS.from_local
        tts = export_bundle.build_tts(config, seed, weights_dir, bundle / "tokenizer.json")
    else:
        tts = export_bundle.build_tts(config, seed, None, bundle / "tokenizer.json")
    weights = {"t3": weights_dir / files["t3"], "s3gen": weights_dir / files["s3gen"]}
    del t3_side, s3gen_side, EnTokenizer, ChatterboxTTS
    tts.device = device
    tts.conds = load_voice(bundle, device, exaggeration, family)
    stages = Stages(args.worker, device, weights, skip)
    if args.worker == "torch-resident":
        tts.t3.to(device)
        tts.s3gen.to(device)
        tts.ve.to(device)
    elif device == "cpu":
        drop_weights(tts.t3)
        drop_weights(tts.s3gen)
        drop_weights(tts.ve)  # not used by generate with a given voice
        gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    load_rss = rss_bytes()
    load_peak = peak_rss_bytes()

    hook = FixedLength(args.tokens, tts.t3.hp.stop_speech_token)
    tts.t3.speech_head.register_forward_hook(hook)
    stage_s = {}
    flow_steps = {"n": None}  # n_cfm_timesteps for S3Gen (None: the reference's 10; Turbo's generate: 2)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed_stage(name, module, fn):
        def run(*a, **kw):
            if name in ("s3gen", "s3gen_all") and flow_steps["n"] is not None:
                kw["n_cfm_timesteps"] = flow_steps["n"]
            stages.enter(name, module)
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                if device == "cuda":
                    torch.cuda.synchronize()
                stage_s[name] = stage_s.get(name, 0.0) + time.perf_counter() - t
                stages.leave(name, module)
        return run

    def timed_call(name, fn):
        def run(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sync()
                stage_s[name] = stage_s.get(name, 0.0) + time.perf_counter() - t
        return run

    if family == "turbo":
        silence = int(manifest["config"]["speech"].get("silence_tokens", 3))
        check = {"t3_tokens": None, "s3gen_tokens": None, "t3_start": None, "first_draw": None}

        def first_draw(_module, _inputs, _out):
            if check["first_draw"] is None:
                sync()
                check["first_draw"] = time.perf_counter()

        tts.t3.speech_head.register_forward_hook(first_draw)
        t3_inference = tts.t3.inference_turbo

        def t3_run(*a, **kw):
            check["t3_start"] = time.perf_counter()
            out = t3_inference(*a, **kw)
            check["t3_tokens"] = int(out.shape[-1])
            return out

        s3_inference = tts.s3gen.inference

        def s3_run(*a, **kw):
            tokens = kw.get("speech_tokens", a[0] if a else None)
            check["s3gen_tokens"] = int(tokens.shape[-1])
            return s3_inference(*a, **kw)

        # enter/leave (offload) around T3 and around all of S3Gen (flow + HiFT); timings per part
        tts.t3.inference_turbo = timed_stage("t3", tts.t3, t3_run)
        tts.s3gen.inference = timed_stage("s3gen_all", tts.s3gen, s3_run)
        tts.s3gen.flow_inference = timed_call("s3gen", tts.s3gen.flow_inference)
        tts.s3gen.hift_inference = timed_call("vocoder", tts.s3gen.hift_inference)
        tts.watermarker.apply_watermark = timed_call("watermark", tts.watermarker.apply_watermark)
        weights = {"t3": weights["t3"], "s3gen_all": weights["s3gen"]}
        stages.weights = weights
        sampler = {k: gen_cfg[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty") if k in gen_cfg}
    else:
        t3_inference, s3_inference = tts.t3.inference, tts.s3gen.inference
        tts.t3.inference = timed_stage("t3", tts.t3, t3_inference)
        # as for Turbo: enter/leave around all of S3Gen, timings per part
        tts.s3gen.inference = timed_stage("s3gen_all", tts.s3gen, s3_inference)
        tts.s3gen.flow_inference = timed_call("s3gen", tts.s3gen.flow_inference)
        tts.s3gen.hift_inference = timed_call("vocoder", tts.s3gen.hift_inference)
        tts.watermarker.apply_watermark = timed_call("watermark", tts.watermarker.apply_watermark)
        weights = {"t3": weights["t3"], "s3gen_all": weights["s3gen"]}
        stages.weights = weights

    def one_run(tokens: int, steps) -> dict:
        hook.tokens = tokens
        flow_steps["n"] = steps
        hook.reset()
        stages.reset()
        stage_s.clear()
        gc.collect()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        torch.manual_seed(0)
        t = time.perf_counter()
        if family == "turbo":
            check.update(t3_tokens=None, s3gen_tokens=None, t3_start=None, first_draw=None)
            wav = tts.generate(args.text, **sampler)
        else:
            wav = tts.generate(args.text, exaggeration=exaggeration)
        if device == "cuda":
            torch.cuda.synchronize()
        gen_s = time.perf_counter() - t
        audio_s = wav.shape[-1] / tts.sr
        if family == "turbo":
            if check["t3_tokens"] != tokens or check["s3gen_tokens"] != tokens + silence or hook.calls != tokens + 1:
                raise RuntimeError(f"forced {tokens} speech tokens (+{silence} appended) but T3 returned "
                                   f"{check['t3_tokens']}, S3Gen got {check['s3gen_tokens']} "
                                   f"({hook.calls} draws)")
            prefill = check["first_draw"] - check["t3_start"]
            stage_s["t3_prefill"] = prefill
            stage_s["t3_per_token"] = (stage_s["t3"] - prefill) / tokens
        stage_s.pop("s3gen_all", None)  # = s3gen + vocoder + the fade-in
        m = {
            "gen_s": gen_s, "audio_s": audio_s, "rtf": gen_s / audio_s if audio_s > 0 else 0.0,
            "tokens": hook.calls - 1, "peak_rss_bytes": peak_rss_bytes(), "rss_after_bytes": rss_bytes(),
            "session_create_s": stages.create_s, "sessions_created": stages.created,
            "sessions_destroyed": stages.destroyed, "transfers": stages.transfers,
            "transfer_bytes": stages.transfer_bytes, "components_offloaded": len(stages.offloaded),
            "stage_seconds": dict(stage_s),
        }
        if device == "cuda":
            m["device_peak_bytes"] = int(torch.cuda.max_memory_reserved())
        return m

    warmup = one_run(args.warmup_tokens or args.tokens, args.warmup_flow_steps)
    runs = [one_run(args.tokens, None) for _ in range(args.runs)]
    process_peak = max([load_peak, warmup["peak_rss_bytes"]] + [r["peak_rss_bytes"] for r in runs])
    if device == "cuda":
        notes.append("device_peak_bytes = torch.cuda.max_memory_reserved() (the caching allocator's reserve; "
                     "the CUDA context is not included)")
    versions = {"torch": torch.__version__, "chatterbox-tts": "0.1.7", "python": platform.python_version()}
    if device == "cuda":
        versions["gpu"] = torch.cuda.get_device_name(0)
    return {
        "schema": SCHEMA, "mode": args.worker, "kind": "synthesis", "framework": "pytorch", "provider": device,
        "tokens": args.tokens, "load_s": load_s, "rss_before_load_bytes": rss_before, "load_rss_bytes": load_rss,
        "warmup": warmup, "runs": runs, "process_peak_rss_bytes": process_peak, "notes": notes,
        "versions": versions,
    }


# ----------------------------------------------------------------------------- orchestrator


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=REPO / "onnx" / "tiny")
    p.add_argument("--modes", default="torch-resident,torch-offload")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--warmup-tokens", type=int, help="speech tokens of the warm-up synthesis (default --tokens)")
    p.add_argument("--warmup-flow-steps", type=int, help="flow-matching steps of the warm-up (default 10)")
    p.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS,
                   help="where the bundle's state dicts are saved for reloading")
    p.add_argument("--out", type=Path, help="report JSON (default: stdout)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_child(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(Path(__file__).resolve())] + argv, stdout=subprocess.PIPE,
                          stderr=None, text=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.bundle = args.bundle.resolve()
    if args.prepare:
        prepare_weights(args.bundle, args.weights_dir / weights_key(read_manifest(args.bundle)))
        return 0
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return 0

    manifest = read_manifest(args.bundle)
    config, seed = bundle_origin(manifest)
    family = bundle_family(manifest)
    if family == "turbo" and not 1 <= max(args.tokens, args.warmup_tokens or 1) <= TURBO_MAX_TOKENS:
        print(f"baseline_torch: Turbo draws at most {TURBO_MAX_TOKENS} speech tokens before the stop token "
              f"(inference_turbo: 1 + max_gen_len 1000 draws); --tokens / --warmup-tokens must be 1..{TURBO_MAX_TOKENS}",
              file=sys.stderr)
        return 2
    wdir = args.weights_dir / weights_key(manifest)
    common = ["--bundle", str(args.bundle), "--weights-dir", str(args.weights_dir)]
    if not weights_ready(wdir, config, seed, family):
        print(f"baseline_torch: saving the bundle's seeded weights to {wdir} (once)", file=sys.stderr)
        if run_child(common + ["--prepare"]).returncode != 0:
            print("baseline_torch: preparing the weights failed", file=sys.stderr)
            return 1
    results = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("torch-resident", "torch-offload"):
            print(f"baseline_torch: unknown mode {mode!r}", file=sys.stderr)
            return 2
        print(f"== baseline: mode `{mode}` ({family} family, {args.tokens} tokens, {args.runs} runs)", file=sys.stderr)
        t = time.time()
        extra = []
        if args.warmup_tokens:
            extra += ["--warmup-tokens", str(args.warmup_tokens)]
        if args.warmup_flow_steps:
            extra += ["--warmup-flow-steps", str(args.warmup_flow_steps)]
        p = run_child(common + extra + ["--worker", mode, "--runs", str(args.runs), "--tokens", str(args.tokens),
                                        "--device", args.device, "--threads", str(args.threads), "--text", args.text])
        line = next((l for l in reversed(p.stdout.splitlines()) if l.startswith("{")), None)
        if p.returncode != 0 or line is None:
            print(f"== baseline: mode `{mode}` FAILED (exit {p.returncode})", file=sys.stderr)
            results.append({"schema": SCHEMA, "mode": mode, "kind": "synthesis", "framework": "pytorch",
                            "provider": args.device, "tokens": args.tokens, "load_s": 0.0,
                            "rss_before_load_bytes": 0, "load_rss_bytes": 0, "runs": [],
                            "process_peak_rss_bytes": 0, "notes": [f"worker failed (exit {p.returncode})"]})
            continue
        print(f"== baseline: mode `{mode}` done in {time.time() - t:.1f} s", file=sys.stderr)
        results.append(json.loads(line))
    report = {
        "schema": SCHEMA, "created_unix_s": int(time.time()), "machine": machine(),
        "config": {"bundle": str(args.bundle), "family": family, "tokens": str(args.tokens), "runs": str(args.runs),
                   "device": args.device, "threads": str(args.threads),
                   "warmup": f"{args.warmup_tokens or args.tokens} tokens, "
                             f"{args.warmup_flow_steps or 'default'} flow steps"},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
