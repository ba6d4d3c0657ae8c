"""Exports a chatterbox-ort model bundle (docs/BUNDLE.md).

    python export/export_bundle.py [--family original|turbo|multilingual] --config {tiny,full} [--checkpoint DIR]
        [--seed N] [--precision fp32|fp16] --out DIR [--goldens] [--ref-wav PATH]

tiny: every component shrunk, random (seeded) weights, every vocabulary / token id /
sample rate kept; goldens always written. full: the upstream architecture, seeded
random weights, or the weights of an upstream checkpoint folder with --checkpoint
(ve.safetensors, t3_cfg.safetensors, s3gen.safetensors, tokenizer.json, conds.pt).
--family turbo exports Chatterbox Turbo (ChatterboxTurboTTS) instead: see
export/turbo_side.py (checkpoint: ve.safetensors, t3_turbo_v1.safetensors,
s3gen_meanflow.safetensors, the GPT-2 tokenizer files, conds.pt). --family multilingual
exports ChatterboxMultilingualTTS: the original pipeline with the multilingual T3 (see
export/mtl_side.py; checkpoint: ve.pt, t3_mtl23ls_v2.safetensors, s3gen.pt,
grapheme_mtl_merged_expanded_v1.json, Cangjie5_TC.json, conds.pt).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import (  # noqa: E402
    OPSET,
    ExportContext,
    ExportError,
    dir_size,
    file_entry,
    log,
    require_checkpoint,
    save_safetensors,
    sha256_file,
    timed,
)

TINY_MAX_BYTES = 21_000_000  # tests/bundle_tiny.rs TINY_BUNDLE_MAX_BYTES
CHECKPOINT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")

GOLDEN_TEXT = "well… this is a “tiny” golden test: it checks the   text front-end; does it work - or not"
REF_SENTENCE = ("The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs, "
                "and then, sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!")
REF_SR = 22050

GENERATION = {"exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8, "min_p": 0.05, "top_p": 1.0,
              "repetition_penalty": 1.2, "flow_steps": 10, "flow_cfg_rate": 0.7, "max_new_tokens": 1000}

FRONTENDS = {
    "wav_decode_resampling": "engine: libsoxr as librosa soxr_hq (load at 24 kHz, 24 -> 16 kHz), torchaudio sinc kernel (S3Gen prompt 24 -> 16 kHz)",
    "voice_encoder_trim": "engine: librosa effects.trim, top_db 20, before voice_encoder",
    "cropping": "engine: 6 s T3 prompt (16 kHz), 10 s S3Gen prompt (24 kHz)",
    "voice_encoder": "graph voice_encoder: mel (power 2, 40 bins), partial windows, LSTM, averaging",
    "s3_tokenizer": "graph s3_tokenizer: log-mel + encoder + FSQ",
    "campplus": "graph campplus: Kaldi fbank (real-valued) + CAM++",
    "s3gen_mel": "graph s3gen_mel: 24 kHz prompt mel",
    "t3": "graphs t3_text_embed, t3_speech_embed, t3_cond, t3_decoder",
    "sampler": "engine: CFG mixing, repetition penalty, temperature, min_p, top_p, seeded draw, stop",
    "flow_encoder": "graph flow_encoder",
    "euler": "engine: cosine schedule Euler loop, CFG rate 0.7",
    "flow_estimator": "graph flow_estimator: one velocity evaluation",
    "hift": "graph hift: F0, sine source, iSTFT; noise and initial phases are inputs",
    "trim_fade": "engine: 20 ms zeros + 20 ms raised-cosine fade-in",
    "perth_resample": "engine: libsoxr as librosa soxr_hq, 24 -> 32 kHz and 32 -> 24 kHz",
    "perth": "graph perth: STFT, energy mask, encoder residual, iSTFT",
}


# ----------------------------------------------------------------------------- tokenizer

SPECIALS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[START]": 255}
TEXT_VOCAB = 704
_BPE_SENTENCES = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "Sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump? "
    "Hello there, this is a tiny golden test: it checks the text front-end; does it work, or not. "
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells. "
    "Peter Piper picked a peck of pickled peppers; where's the peck of pickled peppers Peter Piper picked? "
    "I'd like 3 apples, 12 oranges and 1,000 grapes - please, thank you. It's 9:30 in the morning. "
    "What time is it? Where are you going? Why not! Because I said so... Really? Yes, really. "
    "Speech synthesis turns written words into sound; the model reads text and speaks it aloud. "
    "Good morning, good afternoon, good evening and good night. Once upon a time, in a land far away. "
)
_SYLLABLES = ("ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu ha he hi ho hu "
              "ja je jo ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri "
              "ro ru sa se si so su ta te ti to tu va ve vi vo wa we wi wo ya yo za ze zo th sh ch st tr pl "
              "ing ion er est ed ly ous ent and the").split()


def _bpe_corpus() -> list[str]:
    import re

    rng = np.random.default_rng(704)
    words = re.findall(r"\w+|[^\w\s]+", _BPE_SENTENCES * 3)
    for _ in range(6000):
        n = int(rng.integers(1, 4))
        w = "".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n))
        words.append(w.capitalize() if rng.random() < 0.15 else w)
    return words


def _learn_bpe(words: list[str], alphabet: list[str], n_tokens: int):
    """Plain BPE merge learning (most frequent pair, ties broken by the pair's text)."""
    from collections import Counter

    counts = Counter(words)
    seqs = {w: list(w) for w in counts}
    vocab = list(alphabet)
    known = set(vocab)
    merges = []
    while len(vocab) < n_tokens:
        pairs = Counter()
        for w, c in counts.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            raise RuntimeError("BPE corpus too small for the vocabulary size")
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append((a, b))
        tok = a + b
        if tok not in known:
            known.add(tok)
            vocab.append(tok)
        for w, s in seqs.items():
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(tok)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return vocab, merges


def make_tokenizer(path: Path) -> None:
    """A genuine BPE tokenizer (HF `tokenizers`): 704 ids, [STOP]=0 [UNK]=1 [SPACE]=2
    [START]=255, Whitespace pre-tokenizer, ASCII-printable alphabet; deterministic."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    alphabet = [chr(c) for c in range(33, 127)]
    tokens, merges = _learn_bpe(_bpe_corpus(), alphabet, TEXT_VOCAB - len(SPECIALS))
    free = [i for i in range(TEXT_VOCAB) if i not in SPECIALS.values()]
    vocab = dict(SPECIALS)
    vocab.update({t: i for t, i in zip(tokens, free)})
    assert len(vocab) == TEXT_VOCAB and sorted(vocab.values()) == list(range(TEXT_VOCAB))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([AddedToken(t, special=True) for t in sorted(SPECIALS, key=SPECIALS.get)])
    tok.save(str(path), pretty=True)
    check = Tokenizer.from_file(str(path))
    if check.get_vocab_size(with_added_tokens=True) != TEXT_VOCAB or any(check.token_to_id(t) != i for t, i in SPECIALS.items()):
        raise RuntimeError("generated tokenizer does not have the contract's ids")


# ----------------------------------------------------------------------------- reference clip


def make_ref_wav(path: Path) -> None:
    """espeak-ng reading REF_SENTENCE (~11 s), with silence around it, 22.05 kHz 16-bit mono."""
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        raise ExportError("espeak-ng not found: install it (apt-get install espeak-ng) or pass --ref-wav")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "180", "-w", str(raw), REF_SENTENCE], check=True)
        x, sr = sf.read(str(raw), dtype="int16")
    if sr != REF_SR:
        raise ExportError(f"espeak-ng wrote {sr} Hz, expected {REF_SR}")
    x = np.concatenate([np.zeros(int(0.3 * sr), np.int16), x, np.zeros(int(0.5 * sr), np.int16)])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype="PCM_16")


# ----------------------------------------------------------------------------- model


def check_checkpoint(ckpt: Path, family: str = "original") -> None:
    if family == "multilingual":
        import mtl_side

        return mtl_side.check_checkpoint(ckpt)
    require_checkpoint(ckpt, CHECKPOINT_FILES)


def load_conds(path: Path, family: str = "original"):
    if family == "multilingual":
        from chatterbox.mtl_tts import Conditionals
    else:
        from chatterbox.tts import Conditionals

    try:
        conds = Conditionals.load(path, map_location="cpu")
        t3, gen = conds.t3, conds.gen
        for k in ("prompt_token", "prompt_feat", "embedding"):
            if not torch.is_tensor(gen.get(k)):
                raise KeyError(f"gen.{k}")
        if not torch.is_tensor(t3.speaker_emb) or not torch.is_tensor(t3.cond_prompt_speech_tokens):
            raise KeyError("t3.speaker_emb / t3.cond_prompt_speech_tokens")
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{path}: not a Chatterbox conds.pt ({type(e).__name__}: {e})") from None
    return conds


def build_tts(config: str, seed: int, checkpoint: Path | None, tokenizer_path: Path, family: str = "original"):
    """The reference objects assembled as a chatterbox.tts.ChatterboxTTS, or for the
    multilingual family a chatterbox.mtl_tts.ChatterboxMultilingualTTS (the same builders
    and seeds; T3Config.multilingual(), MTLTokenizer, the checkpoint files of its from_local)."""
    import s3gen_side
    import t3_side
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.tts import ChatterboxTTS

    mtl = family == "multilingual"
    with timed("building reference models"):
        ve = t3_side.build_voice_encoder(config, seed, checkpoint, "ve.pt" if mtl else "ve.safetensors")
        t3 = t3_side.build_t3(config, seed, checkpoint, multilingual=mtl)
        try:
            # ChatterboxMultilingualTTS.from_local loads s3gen.pt strictly
            s3gen = s3gen_side.build_s3gen(config, seed, checkpoint, filename="s3gen.pt" if mtl else None,
                                           strict=True if mtl else None)
        except (FileNotFoundError, RuntimeError, ValueError) as e:  # its messages name the file
            raise ExportError(str(e)) from None
        wm = s3gen_side.build_watermarker(config, seed)
        if mtl:
            import mtl_side
            from chatterbox.mtl_tts import ChatterboxMultilingualTTS as cls

            tok = mtl_side.load_tokenizer(tokenizer_path, tokenizer_path.parent / mtl_side.CANGJIE_FILE)
        else:
            cls = ChatterboxTTS
            try:
                tok = EnTokenizer(str(tokenizer_path))
            except Exception as e:  # noqa: BLE001
                raise ExportError(f"{tokenizer_path}: not a usable tokenizer.json ({type(e).__name__}: {e})") from None
    tts = cls.__new__(cls)  # __init__ would load the packaged Perth weights
    tts.sr, tts.t3, tts.s3gen, tts.ve, tts.tokenizer, tts.device = 24000, t3, s3gen, ve, tok, "cpu"
    tts.conds, tts.watermarker = None, wm
    return tts


def write_voice(tts, path: Path) -> dict:
    c = tts.conds
    t = {
        "t3.speaker_emb": c.t3.speaker_emb.float().reshape(1, -1),
        "t3.cond_prompt_speech_tokens": torch.atleast_2d(c.t3.cond_prompt_speech_tokens).long(),
        "gen.prompt_token": torch.atleast_2d(c.gen["prompt_token"]).long(),
        "gen.prompt_feat": c.gen["prompt_feat"].float(),
        "gen.embedding": c.gen["embedding"].float().reshape(1, -1),
    }
    t = {k: v.detach().contiguous() for k, v in t.items()}
    save_safetensors(path, t, metadata={"format": "chatterbox-ort-voice", "version": "1"})
    return {k: list(v.shape) for k, v in t.items()}


# ----------------------------------------------------------------------------- goldens


@torch.inference_mode()
def conditioning_goldens(ctx: ExportContext, tts, ref_wav: Path) -> None:
    """The steps of ChatterboxTTS.prepare_conditionals, one golden each, checked against it."""
    import librosa

    ref_24k, _ = librosa.load(str(ref_wav), sr=24000)
    ctx.add_golden("ref_24k", ref_24k, "librosa.load(goldens/ref.wav, sr=24000)")
    prepare_conditionals_goldens(ctx, tts, ref_24k, ref_wav, GENERATION["exaggeration"])


@torch.inference_mode()
def prepare_conditionals_goldens(ctx: ExportContext, tts, ref_24k, ref_wav: Path, exaggeration: float) -> tuple:
    """The steps of `prepare_conditionals` after the 24 kHz clip `ref_24k` (the original
    model's and Turbo's are the same from there on), one golden each; then checks that
    `tts.prepare_conditionals(ref_wav)` stores exactly these. Returns (T3 prompt tokens,
    the embed_ref dict)."""
    import librosa
    from chatterbox.models.s3gen.s3gen import get_resampler

    ref_16k = librosa.resample(ref_24k, orig_sr=24000, target_sr=16000)
    ctx.add_golden("ref_16k", ref_16k, "librosa.resample(ref_24k, orig_sr=24000, target_sr=16000)")
    ctx.add_golden("ve_trimmed", librosa.effects.trim(ref_16k, top_db=20)[0], "librosa.effects.trim(ref_16k, top_db=20)[0]")
    ve = torch.from_numpy(tts.ve.embeds_from_wavs([ref_16k], sample_rate=16000)).mean(0, keepdim=True)
    ctx.add_golden("ve_embedding", ve, "VoiceEncoder.embeds_from_wavs([ref_16k], 16000) (trim 20 dB, rate 1.3), mean")
    plen = tts.t3.hp.speech_cond_prompt_len
    t3p, _ = tts.s3gen.tokenizer.forward([ref_16k[: tts.ENC_COND_LEN]], max_len=plen)
    ctx.add_golden("t3_prompt_tokens", torch.atleast_2d(t3p).long(),
                   f"S3Tokenizer.forward([ref_16k[:{tts.ENC_COND_LEN // 16000} s]], max_len={plen})")
    crop = torch.from_numpy(ref_24k[: tts.DEC_COND_LEN]).float()[None]
    ctx.add_golden("s3gen_ref_16k", get_resampler(24000, 16000, "cpu")(crop)[0],
                   "torchaudio Resample(24000, 16000) of ref_24k[:10 s] (as S3Gen.embed_ref)")
    ref = tts.s3gen.embed_ref(ref_24k[: tts.DEC_COND_LEN], 24000, device="cpu")
    ctx.add_golden("s3gen_prompt_tokens", ref["prompt_token"].long(), "S3Gen.embed_ref: S3 tokens of s3gen_ref_16k (truncated to mel/2)")
    ctx.add_golden("xvector", ref["embedding"], "S3Gen.embed_ref: CAM++ x-vector of s3gen_ref_16k")
    ctx.add_golden("prompt_mel", ref["prompt_feat"], "S3Gen.embed_ref: S3Gen mel of ref_24k[:10 s], [1, frames, 80]")

    tts.prepare_conditionals(str(ref_wav), exaggeration=exaggeration)
    c = tts.conds

    def gt(name):
        return torch.from_numpy(ctx.goldens[name])

    same = (torch.equal(c.t3.speaker_emb, ve)
            and torch.equal(torch.atleast_2d(c.t3.cond_prompt_speech_tokens).long(), gt("t3_prompt_tokens"))
            and torch.equal(c.gen["prompt_token"].long(), gt("s3gen_prompt_tokens"))
            and torch.equal(c.gen["prompt_feat"], gt("prompt_mel"))
            and torch.equal(c.gen["embedding"], gt("xvector")))
    if not same:
        raise RuntimeError(f"conditioning goldens differ from {type(tts).__name__}.prepare_conditionals")
    return t3p, ref


def write_goldens(ctx: ExportContext, facts: dict) -> None:
    gdir = ctx.out_dir / "goldens"
    gdir.mkdir(parents=True, exist_ok=True)
    save_safetensors(gdir / "goldens.safetensors", ctx.goldens, metadata={"format": "chatterbox-ort-goldens", "version": "1"})
    tensors = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "how": ctx.golden_notes[k]}
               for k, v in sorted(ctx.goldens.items())}
    doc = dict(facts)
    doc["tensors"] = tensors
    (gdir / "goldens.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- manifest


def versions() -> dict:
    import importlib.metadata as md

    import onnx

    return {"chatterbox_tts": md.version("chatterbox-tts"), "torch": torch.__version__.split("+")[0],
            "onnx": onnx.__version__, "opset": OPSET}


def config_numbers(tts, ctx: ExportContext, family: str = "original") -> dict:
    import t3_side

    hp = tts.t3.hp
    hift_in = {i["name"]: i for i in ctx.components.get("hift", {}).get("inputs", [])}
    harmonics = hift_in.get("phase_init", {}).get("shape", [1, 9, 1])[1]
    cfg = {
        "text": {"vocab_size": hp.text_tokens_dict_size, "start_token": hp.start_text_token, "stop_token": hp.stop_text_token,
                 "space_token": SPECIALS["[SPACE]"], "unk_token": SPECIALS["[UNK]"], "max_positions": hp.max_text_tokens + 2},
        "speech": {"vocab_size": hp.speech_tokens_dict_size, "num_codes": 6561, "start_token": hp.start_speech_token,
                   "stop_token": hp.stop_speech_token, "max_positions": hp.max_speech_tokens + 4, "token_rate_hz": 25},
        "t3": t3_side.t3_config_numbers(tts.t3),
        "voice_encoder": {"sample_rate": 16000, "trim_top_db": 20.0, "embed_size": tts.ve.hp.speaker_embed_size},
        "s3_tokenizer": {"sample_rate": 16000, "max_seconds": 30.0},
        "campplus": {"sample_rate": 16000, "embed_size": 192},
        "s3gen": {"sample_rate": 24000, "prompt_seconds": 10.0, "mel_bins": 80, "mel_frames_per_token": 2,
                  "samples_per_mel_frame": 480, "max_tokens": 2500, "hift_harmonics": harmonics,
                  "fade_zeros_seconds": 0.02, "fade_in_seconds": 0.02},
        "perth": {"sample_rate": 32000},
    }
    import s3gen_side

    extra = getattr(s3gen_side, "config_numbers", None)
    if extra is not None:
        for section, values in extra(tts).items():
            cfg.setdefault(section, {}).update(values)
    if family == "multilingual":
        import mtl_side

        cfg["text"].update(mtl_side.text_config(tts.tokenizer))
        cfg["t3"]["alignment_heads"] = mtl_side.alignment_heads(ctx.config)
    return cfg


def write_manifest(ctx: ExportContext, tts, args, extra_files: list[Path]) -> dict:
    family = getattr(args, "family", "original")
    mtl = family == "multilingual"
    model_id = ("chatterbox-multilingual-" if mtl else "chatterbox-") + f"{args.config}-" + (
        "checkpoint" if args.checkpoint else "random")
    if args.precision == "fp16":
        model_id += "-fp16"
    origin = ({"kind": "checkpoint", "path": str(args.checkpoint)} if args.checkpoint
              else {"kind": "random", "seed": args.seed})
    order = ["voice_encoder", "s3_tokenizer", "campplus", "s3gen_mel", "t3_text_embed", "t3_speech_embed", "t3_cond",
             "t3_decoder", "flow_encoder", "flow_estimator", "hift", "perth"]
    comps = {k: ctx.components[k] for k in order if k in ctx.components}
    comps.update({k: v for k, v in ctx.components.items() if k not in comps})
    model = {"id": model_id, "config": args.config, "origin": origin}
    if mtl:
        import mtl_side

        model = {"id": model_id, "family": family, "config": args.config, "origin": origin}
    manifest = {
        "schema_version": 1,
        "model": model,
        "exporter": versions(),
        "config": config_numbers(tts, ctx, family),
        "generation": mtl_side.GENERATION if mtl else GENERATION,
        "frontends": dict(FRONTENDS, **mtl_side.FRONTENDS) if mtl else FRONTENDS,
        "components": comps,
        "files": [file_entry(p, ctx.out_dir) for p in extra_files],
    }
    (ctx.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Export a chatterbox-ort model bundle (docs/BUNDLE.md)")
    p.add_argument("--family", choices=("original", "turbo", "multilingual"), default="original",
                   help="original: ChatterboxTTS (default); turbo: ChatterboxTurboTTS; "
                        "multilingual: ChatterboxMultilingualTTS")
    p.add_argument("--config", choices=("tiny", "full"), required=True)
    p.add_argument("--checkpoint", type=Path, help="upstream checkpoint folder (full config only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--goldens", action="store_true", help="write goldens/ (always on for tiny)")
    p.add_argument("--ref-wav", type=Path, help="reference clip (default: made with espeak-ng)")
    return p.parse_args(argv)


def clear_out_dir(out: Path, inputs: tuple = ()) -> None:
    """Empties an earlier bundle folder; refuses a non-empty folder without manifest.json
    unless it holds only `inputs` (files the export has read and writes again)."""
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").is_file() and not all(p.name in inputs for p in out.iterdir()):
            raise ExportError(f"{out}: exists, is not empty and holds no manifest.json; refusing to overwrite it")
        for p in sorted(out.iterdir()):  # a stale file must never survive into a new bundle
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def reference_clip(args, out: Path, want_goldens: bool, scratch: Path) -> Path | None:
    """goldens/ref.wav (or a scratch copy for a bundle without goldens): --ref-wav, else
    made with espeak-ng; None for a checkpoint bundle without goldens (it has conds.pt)."""
    if not (want_goldens or args.checkpoint is None):
        return None
    ref_wav = out / "goldens" / "ref.wav" if want_goldens else scratch / "ref.wav"
    ref_wav.parent.mkdir(parents=True, exist_ok=True)
    if args.ref_wav is not None:
        if not args.ref_wav.is_file():
            raise ExportError(f"{args.ref_wav}: reference clip not found")
        shutil.copyfile(args.ref_wav, ref_wav)
    else:
        make_ref_wav(ref_wav)
    return ref_wav


def run(args) -> dict:
    family = getattr(args, "family", "original")
    if family == "turbo":
        import turbo_side

        return turbo_side.run(args)
    import s3gen_side
    import t3_side

    mtl = family == "multilingual"
    if mtl:
        import mtl_side
    if args.checkpoint is not None:
        if args.config != "full":
            raise ExportError("--checkpoint needs --config full (a checkpoint has the upstream architecture)")
        check_checkpoint(args.checkpoint, family)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = args.out
    vocab = mtl_side.vocab_sources(args.checkpoint) if mtl else None  # before out/ is emptied: it may hold them
    clear_out_dir(out, tuple(vocab or ()))
    want_goldens = args.config == "tiny" or args.goldens
    ctx = ExportContext(out, args.config, args.seed, args.checkpoint, args.precision, want_goldens=want_goldens)

    tok_path = out / "tokenizer.json"
    extra_files = [tok_path]
    if mtl:
        extra_files = mtl_side.write_vocab(out, vocab)
    elif args.checkpoint is not None:
        shutil.copyfile(args.checkpoint / "tokenizer.json", tok_path)
    else:
        make_tokenizer(tok_path)
    tts = build_tts(args.config, args.seed, args.checkpoint, tok_path, family)
    tts_name = type(tts).__name__

    scratch = tempfile.TemporaryDirectory(prefix="cbx-export-")  # the clip of a bundle without goldens
    ref_wav = reference_clip(args, out, want_goldens, Path(scratch.name))

    facts = {}
    golden_conds = None
    if want_goldens:
        with timed("conditioning goldens"):
            conditioning_goldens(ctx, tts, ref_wav)
        golden_conds = tts.conds
        facts["ref_wav"] = {"path": "goldens/ref.wav", "sha256": sha256_file(ref_wav),
                            "made_by": "given with --ref-wav" if args.ref_wav is not None
                            else f"espeak-ng -v en-us -s 180, 0.3 s / 0.5 s of silence around: {REF_SENTENCE}"}
        if mtl and facts["ref_wav"]["sha256"] == sha256_file(mtl_side.REPO / "onnx/tiny/goldens/ref.wav"):
            facts["ref_wav"]["same_as"] = "onnx/tiny/goldens/ref.wav"
    if args.checkpoint is not None:
        tts.conds = load_conds(args.checkpoint / "conds.pt", family)
        voice_origin = "conds.pt of the checkpoint"
    else:
        if tts.conds is None:
            with timed("default voice: prepare_conditionals(ref.wav)"):
                tts.prepare_conditionals(str(ref_wav), exaggeration=GENERATION["exaggeration"])
        voice_origin = f"{tts_name}.prepare_conditionals(goldens/ref.wav)"
    voice_shapes = write_voice(tts, out / "voice.safetensors")
    scratch.cleanup()
    log(f"voice.safetensors ({voice_origin}): {voice_shapes}")

    t3_side.export_components(ctx, tts, mtl_side.alignment_heads(args.config) if mtl else None)
    s3gen_side.export_components(ctx, tts)

    if want_goldens:
        tts.conds = golden_conds  # goldens use the voice of goldens/ref.wav
        if mtl:
            text_tokens, text_facts = mtl_side.text_goldens(ctx, tts)
            with timed("T3 goldens (multilingual: alignment, analyzer)"):
                facts["t3"] = mtl_side.t3_goldens(ctx, tts, text_tokens, args.config)
        else:
            from chatterbox.tts import punc_norm

            norm = punc_norm(GOLDEN_TEXT)
            ids = tts.tokenizer.text_to_tokens(norm).long()
            hp = tts.t3.hp
            text_tokens = torch.nn.functional.pad(torch.nn.functional.pad(ids, (1, 0), value=hp.start_text_token),
                                                  (0, 1), value=hp.stop_text_token)
            ctx.add_golden("text_tokens", text_tokens, "[START] + EnTokenizer.text_to_tokens(punc_norm(text)) + [STOP]")
            text_facts = {"text": GOLDEN_TEXT, "normalized_text": norm}
            with timed("T3 goldens"):
                facts["t3"] = t3_side.make_goldens(ctx, tts, text_tokens, GENERATION)
        with timed("S3Gen goldens"):
            facts["s3gen"] = s3gen_side.make_goldens(ctx, tts, tts.conds.gen) or {}
        facts.update(text_facts)
        facts.update({"seed": args.seed, "generation": mtl_side.GENERATION if mtl else GENERATION,
                      "voice": f"the voice of goldens/ref.wav (prepare_conditionals); voice.safetensors = {voice_origin}"})
        if mtl:
            facts["family"] = family
        write_goldens(ctx, facts)

    manifest = write_manifest(ctx, tts, args, extra_files + [out / "voice.safetensors"])
    import verify_bundle

    verify_bundle.validate_manifest(manifest)
    total = dir_size(out)
    log(f"bundle {out}: {total / 1e6:.2f} MB in {sum(1 for p in out.rglob('*') if p.is_file())} files")
    if args.config == "tiny" and total > TINY_MAX_BYTES:
        raise ExportError(f"tiny bundle is {total / 1e6:.2f} MB, over the {TINY_MAX_BYTES / 1e6:.0f} MB limit")
    return manifest


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
