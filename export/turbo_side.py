"""Chatterbox Turbo (`ChatterboxTurboTTS`, chatterbox-tts 0.1.7 `tts_turbo.py`) as a
chatterbox-ort bundle: `export_bundle.py --family turbo` runs `run(args)` here.

What differs from the original family (docs/BUNDLE.md, "The turbo family"):

* T3 is GPT-2 (`GPT2_medium`: 24 x 1024, 16 heads, learned absolute positions
  `wpe` of 8196 inside the backbone), text vocab 50276 (GPT-2 BPE + 19
  paralinguistic tags), speech vocab 6563, no perceiver, no emotion, prompt 375
  tokens (15 s), speech head with a bias. Graphs:
    t3_text_embed    tokens [1, text_len]                       -> token_embeds [1, text_len, D]
    t3_speech_embed  tokens [1, speech_len]                     -> embeds [1, speech_len, D]
    t3_cond          speaker_emb [1, 256], prompt_embeds [1, P, D] -> cond [1, 1 + P, D]
    t3_decoder       inputs_embeds [B, seq, D], past_len [1], past_key_i / past_value_i [B, H, capacity, hd]
                     -> logits [B, seq, 6563], present_key_i / present_value_i (the same buffers, updated
                     in place: kv_cache.py)
  with GPT-2's position ids = past_len + arange(seq) computed in the graph.
* S3Gen is `S3Gen(meanflow=True)`: the flow_estimator has an extra input `r`
  (s3gen_side), 2 Euler steps, linear schedule, no CFG.
* The voice is loudness-normalised to -27 LUFS first, must be longer than 5 s.
* Sampler: temperature 0.8 -> top_k 1000 -> top_p 0.95 -> repetition penalty 1.2.
* Tokenizer: GPT-2 byte-level BPE. For random bundles the vocabulary is derived here
  from GPT-2's BPE ranks as shipped in the `openai-whisper` sdist on PyPI
  (`whisper/assets/gpt2.tiktoken`, fetched once with pip into the cache); a
  checkpoint brings its own vocab.json / merges.txt / added_tokens.json.

Everything else (VoiceEncoder, S3Tokenizer, CAM++, S3Gen mel, flow encoder, HiFT,
Perth, goldens helpers, ExportContext) is the original family's code.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import (
    ExportContext,
    ExportError,
    dir_size,
    file_entry,
    load_safetensors,
    load_state_dict_strict,
    log,
    rel_error,
    require_checkpoint,
    seeded_init,
    sha256_file,
    timed,
)

FAMILY = "turbo"
TEXT_VOCAB = 50276
SPEECH_VOCAB = 6563
NUM_CODES = 6561
START_SPEECH, STOP_SPEECH = 6561, 6562
S3GEN_SIL = 4299  # chatterbox.models.s3gen.const.S3GEN_SIL
N_SILENCE = 3
PROMPT_TOKENS = 375
PROMPT_SECONDS = 15.0
LOUDNESS_LUFS = -27.0
MIN_VOICE_SECONDS = 5.0
GPT2_BASE_VOCAB = 50257  # 256 bytes + 50000 merges + <|endoftext|>
ENDOFTEXT = "<|endoftext|>"
TOKENIZER_MAX_LENGTH = 1024  # GPT-2's model_max_length; text tokens per call (truncation=True)

# The paralinguistic tags, added tokens 50257..50275 in this order. The upstream
# added_tokens.json is not available offline, so this order is an assumption for
# random bundles; a checkpoint's own tokenizer files decide for real weights.
TAGS = ("[laugh]", "[chuckle]", "[sigh]", "[gasp]", "[cough]", "[clear throat]", "[sniff]", "[groan]", "[shush]",
        "[whispering]", "[angry]", "[happy]", "[sarcastic]", "[surprised]", "[fear]", "[crying]", "[dramatic]",
        "[narration]", "[advertisement]")

CHECKPOINT_FILES = ("ve.safetensors", "t3_turbo_v1.safetensors", "s3gen_meanflow.safetensors", "vocab.json",
                    "merges.txt", "conds.pt")

TINY_GPT2_NAME = "GPT2_tiny_cbx"
# hidden 16 (2 heads of 8): the text embedding keeps all 50276 rows, so the hidden size
# is what sets the size of onnx/tiny-turbo (~21 MB with goldens). Heads of 8: ONNX
# Runtime's GroupQueryAttention (the in-place KV cache) needs a head size that is a
# multiple of 8.
TINY_GPT2 = dict(n_embd=16, hidden_size=16, n_head=2, n_layer=2)

GENERATION = {"exaggeration": 0.0, "cfg_weight": 0.0, "temperature": 0.8, "min_p": 0.0, "top_p": 0.95, "top_k": 1000,
              "repetition_penalty": 1.2, "flow_steps": 2, "flow_cfg_rate": 0.0, "flow_schedule": "linear",
              "max_new_tokens": 1001}

FRONTENDS = {
    "voice_minimum": "engine: refuse a reference clip of 5.0 s or less (24 kHz samples / 24000 must exceed 5.0, "
                     "as prepare_conditionals asserts)",
    "loudness": "engine: pyloudnorm Meter(24000).integrated_loudness (ITU-R BS.1770-4: K-weighting, 400 ms blocks, "
                "75% overlap, -70 LUFS absolute and -10 LU relative gates) of the 24 kHz clip; gain "
                "10^((-27 - L) / 20) applied when finite and > 0 (norm_loudness), before everything else",
    "wav_decode_resampling": "engine: libsoxr as librosa soxr_hq (load at 24 kHz; the normalised clip 24 -> 16 kHz), "
                             "torchaudio sinc kernel (S3Gen prompt 24 -> 16 kHz)",
    "voice_encoder_trim": "engine: librosa effects.trim, top_db 20, before voice_encoder",
    "cropping": "engine: 15 s T3 prompt (16 kHz, at most 375 tokens), 10 s S3Gen prompt (24 kHz)",
    "voice_encoder": "graph voice_encoder: mel (power 2, 40 bins), partial windows, LSTM, averaging",
    "s3_tokenizer": "graph s3_tokenizer: log-mel + encoder + FSQ",
    "campplus": "graph campplus: Kaldi fbank (real-valued) + CAM++",
    "s3gen_mel": "graph s3gen_mel: 24 kHz prompt mel",
    "text_normalisation": "engine: Turbo punc_norm (tts_turbo.py): empty -> fixed sentence; capitalise the first "
                          "letter; collapse whitespace; '\u2026' -> ', ', ':' -> ',', em/en dash -> '-', ' ,' -> ',', "
                          "curly quotes -> ASCII; add '.' unless it ends in . ! ? - ,",
    "tokenizer": "engine: tokenizer.json (GPT-2 byte-level BPE, the tags as added tokens); ids = "
                 "tokenizer(text).input_ids, no start/stop text tokens, truncated to config.text.max_positions",
    "t3": "graphs t3_text_embed, t3_speech_embed, t3_cond, t3_decoder (GPT-2; its learned absolute positions "
          "are inside t3_decoder, position = cache length + index)",
    "t3_layout": "prefill = t3_cond(speaker, t3_speech_embed(prompt tokens)) | t3_text_embed(text) | "
                 "t3_speech_embed([6561]); the first token is drawn from the prefill's last logits, then one "
                 "generated token per decoder step",
    "sampler": "engine: no CFG, no min_p; logits processors in this order: temperature (/0.8), top_k 1000, "
               "top_p 0.95, repetition penalty 1.2 (over the distinct previous ids: [6561] at the first draw, the "
               "generated tokens after); softmax; seeded draw; stop at 6562 (not checked on the first draw); "
               "at most 1 + 1000 tokens",
    "speech_tokens": "engine: drop tokens >= 6561, then append 3 x 4299 (S3GEN_SIL)",
    "flow_encoder": "graph flow_encoder",
    "euler": "engine: meanflow Euler, 2 steps, t_span = linspace(0, 1, 3) (linear), no CFG, batch 1: "
             "x += (r - t) * flow_estimator(x, mask, mu, t, spks, cond, r) for (t, r) = (0, 0.5), (0.5, 1); "
             "x0 standard normal [1, 80, frames]; the frames after the prompt mel are kept",
    "flow_estimator": "graph flow_estimator: one meanflow velocity evaluation (inputs t and r)",
    "hift": "graph hift: F0, sine source, iSTFT; noise and initial phases are inputs",
    "trim_fade": "engine: 20 ms zeros + 20 ms raised-cosine fade-in",
    "perth_resample": "engine: libsoxr as librosa soxr_hq, 24 -> 32 kHz and 32 -> 24 kHz",
    "perth": "graph perth: STFT, energy mask, encoder residual, iSTFT",
}

GOLDEN_TEXT = "hi there\u2026 this is a \u201cturbo\u201d test [chuckle]: does it work"
TOKENIZER_CASES = (
    "Hello world",
    " the",
    "[laugh] Oh no [sigh]... that's   not [clear throat]what I meant [cough][cough]!",
    "Numbers: 3.14159, 1,000,000 and 2025-12-01 at 09:30.",
    "Caf\u00e9 na\u00efve \u00fcber \u2014 \u201cquotes\u201d \u2018single\u2019 \u2026 \u65e5\u672c\u8a9e emoji \U0001F600 done",
    "  leading and trailing spaces  ",
    "[whispering]secret[/whispering] [advertisement] [narration] [dramatic] [crying] [fear]",
    "tab\tand\nnewline and <|endoftext|> literal",
)
PUNC_NORM_CASES = (
    "",
    "well\u2026 what\u2014now: yes \u2013 no , ok",
    "\u201cquoted\u201d and \u2018single\u2019 text!",
    "already ends with a comma,",
    "lowercase start   with   spaces [laugh]",
)

TF_SPEECH_LEN = 10
SAMPLER_STEPS = (0, 4, 11)
SAMPLER_MAX_NEW_TOKENS = 16
FLOW_NEW_TOKENS = 8

# ----------------------------------------------------------------------------- GPT-2 tokenizer

WHISPER_REQ = "openai-whisper==20250625"
GPT2_TIKTOKEN_MEMBER = "whisper/assets/gpt2.tiktoken"
GPT2_TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


def cache_dir() -> Path:
    return Path(os.environ.get("CHATTERBOX_ORT_CACHE", Path.home() / ".cache" / "chatterbox-ort"))


def gpt2_tiktoken() -> Path:
    """GPT-2's BPE ranks (`gpt2.tiktoken`: base64 token bytes, rank = GPT-2 id), read from
    the openai-whisper sdist on PyPI (downloaded once with pip, only the asset is kept in
    the cache; no whisper code is used). Checked against a pinned sha256."""
    path = cache_dir() / "gpt2" / "gpt2.tiktoken"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with timed(f"fetching GPT-2 BPE ranks ({WHISPER_REQ} sdist from PyPI, asset only)"), \
                tempfile.TemporaryDirectory(prefix="cbx-whisper-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, WHISPER_REQ]
            r = subprocess.run(cmd, capture_output=True, text=True)
            archives = sorted(Path(tmp).glob("openai*whisper-*.tar.gz"))
            if not archives:
                raise ExportError(f"could not download {WHISPER_REQ} for GPT-2's BPE ranks "
                                  f"({(r.stderr or r.stdout).strip().splitlines()[-1:]}); a checkpoint brings its own "
                                  "tokenizer files")
            with tarfile.open(archives[0]) as tar:
                member = next((m for m in tar.getmembers() if m.name.endswith(GPT2_TIKTOKEN_MEMBER)), None)
                if member is None:
                    raise ExportError(f"{archives[0].name}: no {GPT2_TIKTOKEN_MEMBER}")
                data = tar.extractfile(member).read()
            part = path.with_suffix(".part")
            part.write_bytes(data)
            part.replace(path)
    digest = sha256_file(path)
    if digest != GPT2_TIKTOKEN_SHA256:
        raise ExportError(f"{path}: sha256 {digest} is not GPT-2's gpt2.tiktoken ({GPT2_TIKTOKEN_SHA256}); delete it")
    return path


def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable unicode character map (the byte-level alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def gpt2_vocab_merges(ranks: dict) -> tuple[dict, list]:
    """vocab.json / merges.txt content from BPE ranks: every token's string is its bytes
    through the byte-level alphabet; a multi-byte token's merge is the last step of BPE
    run on its bytes with the merges of lower rank only (so it splits in exactly two)."""
    b2u = bytes_to_unicode()

    def s(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    def bpe(token: bytes, max_rank: int) -> list:
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < max_rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                return parts
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]

    vocab, merges = {}, []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[s(tok)] = rank
        if len(tok) == 1:
            continue
        parts = bpe(tok, rank)
        if len(parts) != 2:
            raise RuntimeError(f"token {tok!r} (rank {rank}) does not split into one merge: {parts}")
        merges.append(f"{s(parts[0])} {s(parts[1])}")
    vocab[ENDOFTEXT] = len(ranks)
    return vocab, merges


def write_gpt2_tokenizer_files(folder: Path) -> None:
    """The upstream tokenizer layout (vocab.json, merges.txt, added_tokens.json,
    special_tokens_map.json, tokenizer_config.json) for GPT-2 + the Turbo tags."""
    ranks = {}
    for line in gpt2_tiktoken().read_bytes().splitlines():
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    if sorted(ranks.values()) != list(range(GPT2_BASE_VOCAB - 1)):
        raise ExportError("gpt2.tiktoken: ranks are not 0..50255")
    vocab, merges = gpt2_vocab_merges(ranks)
    if len(vocab) != GPT2_BASE_VOCAB or len(merges) != GPT2_BASE_VOCAB - 257:
        raise RuntimeError(f"derived GPT-2 vocab has {len(vocab)} entries and {len(merges)} merges")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "added_tokens.json").write_text(json.dumps({t: GPT2_BASE_VOCAB + i for i, t in enumerate(TAGS)}, indent=2))
    special = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "unk_token": ENDOFTEXT}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": TOKENIZER_MAX_LENGTH, "add_prefix_space": False,
         "add_bos_token": False, **special}, indent=2))


def load_tokenizer(folder: Path):
    """AutoTokenizer.from_pretrained(folder) with the pad token of from_local."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{folder}: not a loadable GPT-2 tokenizer ({type(e).__name__}: {e})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if len(tok) != TEXT_VOCAB:
        log(f"WARNING {folder}: tokenizer has {len(tok)} ids, Turbo's T3 has {TEXT_VOCAB}")
    if len(tok) > TEXT_VOCAB:
        raise ExportError(f"{folder}: tokenizer has {len(tok)} ids, more than T3's text vocabulary {TEXT_VOCAB}")
    return tok


def tokenizer_tags(tok) -> list:
    """The added tokens beyond the BPE model's vocabulary (the paralinguistic tags), in id order."""
    base = tok.backend_tokenizer.get_vocab_size(with_added_tokens=False)
    return [t.content for i, t in sorted(tok.added_tokens_decoder.items()) if i >= base]


def check_gpt2_facts(tok) -> None:
    """A few facts of the real GPT-2 vocabulary, so a wrong derivation cannot pass."""
    facts = {"Hello world": [15496, 995], " the": [262], "<|endoftext|>": [50256], " Hello world": [18435, 995],
             "!": [0]}
    for text, want in facts.items():
        got = tok(text).input_ids
        if got != want:
            raise RuntimeError(f"GPT-2 tokenizer: {text!r} -> {got}, expected {want}")
    if tok.backend_tokenizer.get_vocab_size(with_added_tokens=False) != GPT2_BASE_VOCAB:
        raise RuntimeError("GPT-2 tokenizer: base vocabulary is not 50257")


def save_tokenizer(tok, path: Path, cases) -> None:
    """tokenizer.json = the fast tokenizer's backend (`backend_tokenizer.save`, compact
    JSON); reloaded with `tokenizers` and required to give tokenizer(text).input_ids."""
    from tokenizers import Tokenizer

    tok.backend_tokenizer.save(str(path), pretty=False)
    again = Tokenizer.from_file(str(path))
    for text in cases:
        want = tok(text, truncation=True).input_ids
        for special in (True, False):
            got = again.encode(text, add_special_tokens=special).ids
            if got != want:
                raise RuntimeError(f"tokenizer.json differs from the transformers tokenizer on {text!r}: {got} vs {want}")


# ----------------------------------------------------------------------------- model


def turbo_hp(config: str):
    """T3Config exactly as ChatterboxTurboTTS.from_local sets it (tiny: a shrunk GPT-2)."""
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config(text_tokens_dict_size=TEXT_VOCAB)
    if config == "tiny":
        cfg = dict(LLAMA_CONFIGS["GPT2_medium"])
        cfg.update(TINY_GPT2)
        LLAMA_CONFIGS[TINY_GPT2_NAME] = cfg
        hp.llama_config_name = TINY_GPT2_NAME
    else:
        hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = SPEECH_VOCAB
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = PROMPT_TOKENS
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    return hp


def random_t3(config: str, seed: int):
    """The seeded random T3 (with tfmr.wte, as a checkpoint's state dict has it)."""
    from chatterbox.models.t3 import T3

    torch.manual_seed(seed)
    return seeded_init(T3(turbo_hp(config)), seed + 2)


def build_t3(config: str, seed: int, checkpoint: Path | None):
    from chatterbox.models.t3 import T3

    if checkpoint is not None:
        t3 = T3(turbo_hp("full"))
        path = checkpoint / "t3_turbo_v1.safetensors"
        state = load_safetensors(path)
        if "model" in state.keys():  # as from_local
            state = state["model"][0]
        load_state_dict_strict(t3, path, state=state)
    else:
        t3 = random_t3(config, seed)
    del t3.tfmr.wte  # as from_local: inputs are always embeddings
    t3.tfmr.config._attn_implementation = "sdpa"  # GPT-2's default here; explicit for the export
    return t3.eval()


def check_checkpoint(ckpt: Path) -> None:
    require_checkpoint(ckpt, CHECKPOINT_FILES)


def build_tts(config: str, seed: int, checkpoint: Path | None, tokenizer_dir: Path):
    """The reference objects assembled as a chatterbox.tts_turbo.ChatterboxTurboTTS."""
    import s3gen_side
    import t3_side
    from chatterbox.tts_turbo import ChatterboxTurboTTS

    with timed("building reference models (turbo)"):
        ve = t3_side.build_voice_encoder(config, seed, checkpoint)
        t3 = build_t3(config, seed, checkpoint)
        try:
            s3gen = s3gen_side.build_s3gen(config, seed, checkpoint, meanflow=True)
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            raise ExportError(str(e)) from None
        wm = s3gen_side.build_watermarker(config, seed)
        tok = load_tokenizer(tokenizer_dir)
    tts = ChatterboxTurboTTS.__new__(ChatterboxTurboTTS)  # __init__ would load the packaged Perth weights
    tts.sr, tts.t3, tts.s3gen, tts.ve, tts.tokenizer, tts.device = 24000, t3, s3gen, ve, tok, "cpu"
    tts.conds, tts.watermarker = None, wm
    return tts


def load_conds(path: Path):
    import export_bundle

    conds = export_bundle.load_conds(path)
    n = torch.atleast_2d(conds.t3.cond_prompt_speech_tokens).shape[1]
    if n > PROMPT_TOKENS:
        raise ExportError(f"{path}: {n} T3 prompt tokens, Turbo takes at most {PROMPT_TOKENS}")
    return conds


# ----------------------------------------------------------------------------- graphs


class TextEmbedGraph(nn.Module):
    """tokens [1, L] -> t3.text_emb(tokens) (no positions: GPT-2 adds them itself)."""

    def __init__(self, t3):
        super().__init__()
        self.text_emb = t3.text_emb

    def forward(self, tokens):
        return self.text_emb(tokens)


class SpeechEmbedGraph(nn.Module):
    """tokens [1, L] -> t3.speech_emb(tokens)."""

    def __init__(self, t3):
        super().__init__()
        self.speech_emb = t3.speech_emb

    def forward(self, tokens):
        return self.speech_emb(tokens)


class CondGraph(nn.Module):
    """T3CondEnc of Turbo: spkr_enc(speaker) then the prompt embeddings (no perceiver, no emotion)."""

    def __init__(self, t3):
        super().__init__()
        self.cond_enc = t3.cond_enc

    def forward(self, speaker_emb, prompt_embeds):
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        placeholder = torch.zeros(1, 1, dtype=torch.long)  # the encoder only checks it is set
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=placeholder,
                      cond_prompt_speech_emb=prompt_embeds, emotion_adv=None)
        return self.cond_enc(cond)


class Gpt2DecoderGraph(nn.Module):
    """One GPT-2 pass on the in-place KV cache (kv_cache.py), then the speech head: the
    reference blocks' modules (ln_1, c_attn, c_proj, ln_2, MLP, learned positions wpe at
    past_len + index, ln_f), with the cache update and attention in one
    GroupQueryAttention per block."""

    def __init__(self, t3):
        super().__init__()
        self.tfmr, self.head = t3.tfmr, t3.speech_head
        c = t3.cfg
        if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx or c.reorder_and_upcast_attn:
            raise ExportError("Turbo T3: only GPT-2's default attention scaling (1/sqrt(head_dim)) is exported")
        self.n_heads = c.num_attention_heads

    def forward(self, inputs_embeds, past_len, *past):
        import kv_cache

        lengths = kv_cache.CacheLengths(inputs_embeds, past_len)
        h = self.tfmr.drop(inputs_embeds + self.tfmr.wpe(lengths.positions))
        presents = []
        for i, block in enumerate(self.tfmr.h):
            a = block.attn
            q, k, v = a.c_attn(block.ln_1(h)).split(a.split_size, dim=2)
            out, pk, pv = kv_cache.attend(q, k, v, past[2 * i], past[2 * i + 1], lengths, self.n_heads, self.n_heads,
                                          a.head_dim ** -0.5)
            h = h + a.c_proj(out)
            h = h + block.mlp(block.ln_2(h))
            presents += [pk, pv]
        return (self.head(self.tfmr.ln_f(h)), *presents)


def t3_config_numbers(t3) -> dict:
    c, hp = t3.cfg, t3.hp
    return {
        "hidden_size": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "num_heads": c.num_attention_heads,
        "num_kv_heads": c.num_attention_heads,
        "head_dim": c.hidden_size // c.num_attention_heads,
        "intermediate_size": c.n_inner or 4 * c.hidden_size,
        "cond_len": 1 + hp.speech_cond_prompt_len,
        "speaker_embed_size": hp.speaker_embed_size,
        "prompt_max_tokens": hp.speech_cond_prompt_len,
        "prompt_seconds": PROMPT_SECONDS,
        "max_positions": c.n_positions,
    }


def export_t3(ctx: ExportContext, tts) -> None:
    import t3_side

    t3 = tts.t3
    cfg = t3.cfg
    d = cfg.hidden_size
    g = torch.Generator().manual_seed(ctx.seed + 100)

    def tok(b, n, hi):
        return torch.randint(0, hi, (b, n), generator=g)

    ctx.export("t3_text_embed", TextEmbedGraph(t3), (tok(1, 9, TEXT_VOCAB),), ["tokens"], ["token_embeds"],
               {"tokens": {1: "text_len"}, "token_embeds": {1: "text_len"}},
               [(tok(1, 5, TEXT_VOCAB),), (tok(1, 37, TEXT_VOCAB),)])

    ctx.export("t3_speech_embed", SpeechEmbedGraph(t3), (tok(1, 7, SPEECH_VOCAB),), ["tokens"], ["embeds"],
               {"tokens": {1: "speech_len"}, "embeds": {1: "speech_len"}},
               [(tok(1, 1, SPEECH_VOCAB),), (tok(1, PROMPT_TOKENS, SPEECH_VOCAB),)])

    def cond_in(p):
        spk = torch.randn(1, t3.hp.speaker_embed_size, generator=g)
        spk = spk / spk.norm()
        return spk, torch.randn(1, p, d, generator=g)

    ctx.export("t3_cond", CondGraph(t3), cond_in(20), ["speaker_emb", "prompt_embeds"], ["cond"],
               {"prompt_embeds": {1: "prompt_len"}, "cond": {1: "cond_len"}},
               [cond_in(PROMPT_TOKENS), cond_in(7), cond_in(0)])

    # traced with seq > 1 and past > 0 so neither the positions nor the causal mask is specialised
    h = cfg.num_attention_heads
    t3_side.export_decoder(ctx, "t3_decoder", Gpt2DecoderGraph(t3), t3_side.ReferenceDecoder(t3), cfg.num_hidden_layers,
                           d, h, d // h, [(1, 17, 0), (1, 40, 0), (1, 1, 23), (1, 1, 57), (1, 5, 9), (2, 1, 6)], g)


def export_components(ctx: ExportContext, tts) -> None:
    import s3gen_side
    import t3_side

    t3_side.export_voice_encoder(ctx, tts.ve)
    export_t3(ctx, tts)
    s3gen_side.export_components(ctx, tts)  # flow_estimator: the meanflow variant (input r)


# ----------------------------------------------------------------------------- goldens


def _fresh_cond(voice_t3):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    return T3Cond(speaker_emb=voice_t3.speaker_emb.clone(),
                  cond_prompt_speech_tokens=voice_t3.cond_prompt_speech_tokens.clone(),
                  emotion_adv=GENERATION["exaggeration"] * torch.ones(1, 1, 1))


@torch.inference_mode()
def conditioning_goldens(ctx: ExportContext, tts, ref_wav: Path) -> dict:
    """The steps of ChatterboxTurboTTS.prepare_conditionals, one golden each, checked to
    be identical to what it stores."""
    import librosa
    import pyloudnorm

    import export_bundle

    raw, sr = librosa.load(str(ref_wav), sr=24000)
    if not len(raw) / sr > MIN_VOICE_SECONDS:
        raise ExportError(f"{ref_wav}: {len(raw) / sr:.2f} s; Turbo needs a reference clip longer than 5 s")
    ctx.add_golden("ref_24k_raw", raw, "librosa.load(goldens/ref.wav, sr=24000)")
    lufs = float(pyloudnorm.Meter(24000).integrated_loudness(raw))
    ctx.add_golden("loudness_lufs", np.array([lufs], np.float32), "pyloudnorm.Meter(24000).integrated_loudness(ref_24k_raw) "
                   "(float64 value in goldens.json voice.loudness_lufs)")
    ref_24k = tts.norm_loudness(raw, 24000, target_lufs=LOUDNESS_LUFS)
    ctx.add_golden("ref_24k", ref_24k, "ChatterboxTurboTTS.norm_loudness(ref_24k_raw, 24000): x 10^((-27 - L) / 20)")
    t3p, ref = export_bundle.prepare_conditionals_goldens(ctx, tts, ref_24k, ref_wav, GENERATION["exaggeration"])
    gain_db = LOUDNESS_LUFS - lufs
    return {"loudness_lufs": lufs, "gain_db": gain_db, "gain_linear": 10.0 ** (gain_db / 20.0),
            "seconds": len(raw) / 24000, "t3_prompt_tokens": int(t3p.shape[-1]),
            "s3gen_prompt_tokens": int(ref["prompt_token"].shape[1]), "prompt_mel_frames": int(ref["prompt_feat"].shape[1])}


def text_goldens(ctx: ExportContext, tts, tokenizer_path: Path) -> tuple[torch.Tensor, dict]:
    """text_tokens of the golden text, plus tokenizer and punc_norm cases for goldens.json."""
    from chatterbox.tts_turbo import punc_norm
    from tokenizers import Tokenizer

    tok = tts.tokenizer
    norm = punc_norm(GOLDEN_TEXT)
    ids = tok(norm, return_tensors="pt", padding=True, truncation=True).input_ids.long()
    ctx.add_golden("text_tokens", ids, "tokenizer(punc_norm(text), padding=True, truncation=True).input_ids "
                   "(GPT-2 BPE + tags; no start/stop tokens)")
    rust_like = Tokenizer.from_file(str(tokenizer_path))
    cases = []
    for text in TOKENIZER_CASES:
        want = tok(text, truncation=True).input_ids
        if rust_like.encode(text).ids != want:
            raise RuntimeError(f"tokenizer.json differs on {text!r}")
        cases.append({"text": text, "ids": want})
    punc = [{"text": t, "normalized": punc_norm(t), "ids": tok(punc_norm(t), truncation=True).input_ids}
            for t in PUNC_NORM_CASES]
    return ids, {"text": GOLDEN_TEXT, "normalized_text": norm, "text_token_ids": ids[0].tolist(),
                 "tokenizer_cases": cases, "punc_norm_cases": punc}


@torch.inference_mode()
def t3_goldens(ctx: ExportContext, tts, text_tokens: torch.Tensor) -> dict:
    """t3_cond, teacher-forced logits through the KV-cache path of inference_turbo, and
    the sampler steps of a replica of inference_turbo checked to draw its tokens."""
    from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    t3 = tts.t3
    voice = tts.conds.t3
    gen = GENERATION

    cond = t3.prepare_conditioning(_fresh_cond(voice))
    ctx.add_golden("t3_cond", cond, "T3.prepare_conditioning(voice): spkr_enc(speaker_emb) | speech_emb(t3 prompt "
                   "tokens); [1, 1 + P, D]")

    # teacher forcing: prefill = cond | text | speech_emb(6561) (inference_turbo's), then tf[1..] one at a time
    g = torch.Generator().manual_seed(ctx.seed + 7)
    tf = torch.cat([torch.tensor([[START_SPEECH]]), torch.randint(0, NUM_CODES, (1, TF_SPEECH_LEN - 1), generator=g)], 1)
    embeds, _ = t3.prepare_input_embeds(t3_cond=_fresh_cond(voice), text_tokens=text_tokens, speech_tokens=tf[:, :1],
                                        cfg_weight=0.0)
    out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
    past = out.past_key_values
    steps = [t3.speech_head(out[0][:, -1:])[:, -1]]
    for j in range(1, TF_SPEECH_LEN):
        out = t3.tfmr(inputs_embeds=t3.speech_emb(tf[:, j:j + 1]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        steps.append(t3.speech_head(out[0])[:, -1])
    tf_logits = torch.stack(steps, 1)
    full = torch.cat([embeds, t3.speech_emb(tf[:, 1:])], 1)
    one_pass = t3.speech_head(t3.tfmr(inputs_embeds=full).last_hidden_state)[:, -TF_SPEECH_LEN:]
    err = rel_error(one_pass.numpy(), tf_logits.numpy())
    log(f"  tf_logits cached steps vs one pass: rel error {err:.3g}")
    if err > 1e-5:
        raise RuntimeError(f"T3 KV-cache path differs from one pass: {err:.3g}")
    ctx.add_golden("tf_speech_tokens", tf, "fixed speech tokens: 6561 (start) first, the rest seeded uniform < 6561")
    ctx.add_golden("tf_logits", tf_logits,
                   "speech_head(GPT-2) logits as inference_turbo computes them: prefill cond | text_emb(text) | "
                   "speech_emb(tf[0]=6561) -> logits[0] (last position), then speech_emb(tf[j]) one token at a time "
                   "on the KV cache -> logits[j]; equal to one pass over cond | text | tf (rel error in goldens.json)")

    # sampler: the loop of inference_turbo, recording steps k
    procs = LogitsProcessorList([TemperatureLogitsWarper(gen["temperature"]), TopKLogitsWarper(gen["top_k"]),
                                 TopPLogitsWarper(gen["top_p"]),
                                 RepetitionPenaltyLogitsProcessor(float(gen["repetition_penalty"]))])
    sampler_seed = ctx.seed + 11
    torch.manual_seed(sampler_seed)
    start = torch.tensor([[START_SPEECH]])
    embeds, _ = t3.prepare_input_embeds(t3_cond=_fresh_cond(voice), text_tokens=text_tokens, speech_tokens=start,
                                        cfg_weight=0.0)
    out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
    past = out.past_key_values
    logits = t3.speech_head(out[0][:, -1:])[:, -1, :]
    generated = []
    for i in range(SAMPLER_MAX_NEW_TOKENS):
        ids = start if i == 0 else torch.cat(generated, 1)
        processed = procs(ids, logits)
        if i in SAMPLER_STEPS:
            ctx.add_golden(f"sampler_logits_{i}", logits, f"raw T3 logits [1, 6563] at draw {i}")
            ctx.add_golden(f"sampler_history_{i}", ids[0].clone(), f"input_ids inference_turbo gives the processors at "
                           f"draw {i} ([6561] at draw 0, the generated tokens after)")
            ctx.add_golden(f"sampler_processed_{i}", processed,
                           f"draw {i}: /temperature {gen['temperature']}, top_k {gen['top_k']}, top_p {gen['top_p']}, "
                           f"repetition penalty {gen['repetition_penalty']}, in that order (-inf where removed)")
        nxt = torch.multinomial(torch.softmax(processed, dim=-1), num_samples=1)
        generated.append(nxt)
        if i > 0 and int(nxt) == STOP_SPEECH:
            break
        out = t3.tfmr(inputs_embeds=t3.speech_emb(nxt), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = t3.speech_head(out[0])[:, -1, :]
    sampled = torch.cat(generated, 1)[0].tolist()
    torch.manual_seed(sampler_seed)
    with contextlib.redirect_stderr(io.StringIO()):  # tqdm
        ref = t3.inference_turbo(t3_cond=_fresh_cond(voice), text_tokens=text_tokens, temperature=gen["temperature"],
                                 top_k=gen["top_k"], top_p=gen["top_p"], repetition_penalty=gen["repetition_penalty"],
                                 max_gen_len=len(sampled) - 1)
    want = sampled[:-1] if sampled[-1] == STOP_SPEECH else sampled
    if ref[0].tolist() != want:
        raise RuntimeError(f"sampler replica diverges from inference_turbo: {sampled} vs {ref[0].tolist()}")
    ctx.add_golden("t3_sampled_tokens", torch.tensor(sampled), f"inference_turbo tokens with torch.manual_seed({sampler_seed}) "
                   f"(max_gen_len={len(sampled) - 1}; torch's RNG: informative only, the engine's RNG differs)")
    return {"tf_speech_len": TF_SPEECH_LEN, "tf_seed": ctx.seed + 7, "tf_cached_vs_one_pass_rel_error": err,
            "sampler_steps": list(SAMPLER_STEPS), "sampler_torch_seed": sampler_seed,
            "sampler_order": ["temperature", "top_k", "top_p", "repetition_penalty"],
            "sampler_history": "draw 0: [6561] (the start token); draw i > 0: the tokens drawn before it"}


def reference_meanflow(s3, tokens_1d: torch.Tensor, gen: dict, noise: torch.Tensor):
    """S3Gen.flow_inference(tokens, ref_dict=gen, n_cfm_timesteps=2, finalize=True) as
    S3Gen.inference calls it, with its two draws patched: torch.randn(1, 80, 2M) (the
    noised_mels) returns noise[..., prompt:], the CFM's randn_like(mu) returns noise, so
    z = noise exactly. Returns (mel, mu, spks)."""
    import s3gen_side

    m = tokens_1d.shape[-1]
    prompt = noise.shape[2] - 2 * m
    captured = {}

    def pre_hook(_mod, args, kwargs):
        captured.update(kwargs)

    real_randn, real_randn_like = torch.randn, torch.randn_like

    def fake_randn(*size, **kw):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
        if shape == (1, 80, 2 * m):
            return noise[..., prompt:].clone()
        return real_randn(*size, **kw)

    def fake_randn_like(t, *a, **k):
        if tuple(t.shape) == tuple(noise.shape):
            return noise.clone().to(t.dtype)
        return real_randn_like(t, *a, **k)

    ref_dict = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in gen.items()}
    h = s3.flow.decoder.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with s3gen_side._patched(torch, "randn", fake_randn), s3gen_side._patched(torch, "randn_like", fake_randn_like):
            mel = s3.flow_inference(tokens_1d, ref_dict=ref_dict, n_cfm_timesteps=GENERATION["flow_steps"], finalize=True)
    finally:
        h.remove()
    return mel.clone(), captured["mu"].clone(), captured["spks"].clone()


@torch.no_grad()
def s3gen_goldens(ctx: ExportContext, tts) -> dict:
    import s3gen_side

    s3 = tts.s3gen
    gen = tts.conds.gen
    n_prompt = gen["prompt_token"].shape[1]
    seed = ctx.seed
    g = torch.Generator().manual_seed(seed + 7001)
    new = torch.randint(0, NUM_CODES, (FLOW_NEW_TOKENS,), generator=g)
    tokens = torch.cat([new, torch.tensor([S3GEN_SIL] * N_SILENCE)])  # as generate appends them
    m = tokens.shape[0]
    frames = 2 * (n_prompt + m)
    noise = torch.randn(1, 80, frames, generator=g)
    mel, mu, spks = reference_meanflow(s3, tokens, gen, noise)
    prompt_frames = gen["prompt_feat"].shape[1]
    assert mu.shape == (1, 80, frames) and mel.shape == (1, 80, frames - prompt_frames), (mu.shape, mel.shape)
    ctx.add_golden("flow_tokens", tokens[None], f"torch.randint(0, 6561, ({FLOW_NEW_TOKENS},)) with Generator seed "
                   f"{seed + 7001}, then 3 x 4299 (S3GEN_SIL, as generate appends); prompt = s3gen_prompt_tokens")
    ctx.add_golden("flow_mu", mu, "mu the reference CausalMaskedDiffWithXvec.inference (finalize=True) passes to its "
                   "CFM decoder for [s3gen_prompt_tokens | flow_tokens] with the voice's xvector")
    ctx.add_golden("flow_noise", noise, f"the whole start z [1, 80, {frames}] after z[..., prompt_len:] = noised_mels "
                   f"(flow_inference's torch.randn(1, 80, {2 * m}) patched to return flow_noise[..., {frames - 2 * m}:], "
                   f"the CFM's randn_like(mu) to return flow_noise); drawn with torch.randn after flow_tokens from the "
                   f"same Generator")
    ctx.add_golden("flow_mel", mel, "S3Gen.flow_inference(flow_tokens, ref_dict=voice, n_cfm_timesteps=2, finalize=True) "
                   "with that noise: meanflow basic_euler, t_span linspace(0, 1, 3), no CFG, prompt cond = prompt_mel, "
                   "prompt frames removed")
    wav, x24, x32, out24, out32 = s3gen_side.hift_watermark_goldens(ctx, tts, mel, g)
    log(f"s3gen goldens (meanflow): prompt {n_prompt} + {m} tokens, hift {wav.shape[1]} samples")
    return {
        "flow": {"prompt_tokens": int(n_prompt), "prompt_frames": int(prompt_frames), "new_tokens": FLOW_NEW_TOKENS,
                 "silence_tokens": N_SILENCE, "silence_token": S3GEN_SIL, "steps": GENERATION["flow_steps"],
                 "meanflow": True, "cfg_rate": 0.0, "t_scheduler": "linear", "t_span": [0.0, 0.5, 1.0],
                 "generator_seed": seed + 7001,
                 "draw_order": "flow_tokens (the 8 random ones), flow_noise, hift_phase_init, hift_sine_noise"},
        "hift": {"frames": int(mel.shape[2]), "samples": int(wav.shape[1])},
        "watermark": {"input_24k": int(x24.shape[0]), "input_32k": int(x32.shape[0]), "output_32k": int(out32.shape[0]),
                      "output_24k": int(np.asarray(out24).shape[0]), "resampler": "librosa.resample (soxr_hq)"},
    }


# ----------------------------------------------------------------------------- manifest


def config_numbers(tts, ctx: ExportContext, tags: list) -> dict:
    hp = tts.t3.hp
    hift_in = {i["name"]: i for i in ctx.components.get("hift", {}).get("inputs", [])}
    harmonics = hift_in.get("phase_init", {}).get("shape", [1, 9, 1])[1]
    max_text = tts.tokenizer.model_max_length
    if not isinstance(max_text, int) or max_text > tts.t3.cfg.n_positions:
        log(f"WARNING tokenizer model_max_length {max_text!r}: using GPT-2's n_positions {tts.t3.cfg.n_positions}")
        max_text = tts.t3.cfg.n_positions
    return {
        "text": {"vocab_size": hp.text_tokens_dict_size, "max_positions": int(max_text), "tokenizer": "gpt2-bpe",
                 "tags": list(tags)},
        "speech": {"vocab_size": hp.speech_tokens_dict_size, "num_codes": NUM_CODES, "start_token": hp.start_speech_token,
                   "stop_token": hp.stop_speech_token, "max_positions": hp.max_speech_tokens, "token_rate_hz": 25,
                   "silence_token": S3GEN_SIL, "silence_tokens": N_SILENCE},
        "t3": t3_config_numbers(tts.t3),
        "voice": {"min_seconds": MIN_VOICE_SECONDS, "loudness_lufs": LOUDNESS_LUFS},
        "voice_encoder": {"sample_rate": 16000, "trim_top_db": 20.0, "embed_size": tts.ve.hp.speaker_embed_size},
        "s3_tokenizer": {"sample_rate": 16000, "max_seconds": 30.0},
        "campplus": {"sample_rate": 16000, "embed_size": 192},
        "s3gen": {"sample_rate": 24000, "prompt_seconds": 10.0, "mel_bins": 80, "mel_frames_per_token": 2,
                  "samples_per_mel_frame": 480, "max_tokens": 2500, "hift_harmonics": harmonics,
                  "fade_zeros_seconds": 0.02, "fade_in_seconds": 0.02, "meanflow": True},
        "perth": {"sample_rate": 32000},
    }


def write_manifest(ctx: ExportContext, tts, args, tags: list, extra_files: list) -> dict:
    import export_bundle

    model_id = f"chatterbox-turbo-{args.config}-" + ("checkpoint" if args.checkpoint else "random")
    if args.precision == "fp16":
        model_id += "-fp16"
    origin = ({"kind": "checkpoint", "path": str(args.checkpoint)} if args.checkpoint
              else {"kind": "random", "seed": args.seed})
    order = ["voice_encoder", "s3_tokenizer", "campplus", "s3gen_mel", "t3_text_embed", "t3_speech_embed", "t3_cond",
             "t3_decoder", "flow_encoder", "flow_estimator", "hift", "perth"]
    comps = {k: ctx.components[k] for k in order if k in ctx.components}
    comps.update({k: v for k, v in ctx.components.items() if k not in comps})
    manifest = {
        "schema_version": 1,
        "model": {"id": model_id, "family": FAMILY, "config": args.config, "origin": origin},
        "exporter": export_bundle.versions(),
        "config": config_numbers(tts, ctx, tags),
        "generation": GENERATION,
        "frontends": FRONTENDS,
        "components": comps,
        "files": [file_entry(p, ctx.out_dir) for p in extra_files],
    }
    (ctx.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ----------------------------------------------------------------------------- main


def run(args) -> dict:
    """export_bundle.py --family turbo."""
    import export_bundle
    import verify_bundle

    if args.checkpoint is not None:
        if args.config != "full":
            raise ExportError("--checkpoint needs --config full (a checkpoint has the upstream architecture)")
        check_checkpoint(args.checkpoint)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = args.out
    export_bundle.clear_out_dir(out)
    want_goldens = args.config == "tiny" or args.goldens
    ctx = ExportContext(out, args.config, args.seed, args.checkpoint, args.precision, want_goldens=want_goldens)
    scratch = tempfile.TemporaryDirectory(prefix="cbx-export-turbo-")

    if args.checkpoint is not None:
        tok_dir = args.checkpoint
    else:
        tok_dir = Path(scratch.name) / "tokenizer"
        with timed("GPT-2 tokenizer files (vocab.json / merges.txt from GPT-2's BPE ranks, + the tags)"):
            write_gpt2_tokenizer_files(tok_dir)
    tts = build_tts(args.config, args.seed, args.checkpoint, tok_dir)
    check_gpt2_facts(tts.tokenizer)
    tags = tokenizer_tags(tts.tokenizer)
    if args.checkpoint is None and tags != list(TAGS):
        raise RuntimeError(f"tokenizer tags {tags} differ from {list(TAGS)}")
    tok_path = out / "tokenizer.json"
    save_tokenizer(tts.tokenizer, tok_path, (GOLDEN_TEXT,) + TOKENIZER_CASES + tuple(TAGS))

    ref_wav = export_bundle.reference_clip(args, out, want_goldens, Path(scratch.name))
    facts = {}
    golden_conds = None
    if want_goldens:
        with timed("conditioning goldens (turbo)"):
            facts["voice"] = conditioning_goldens(ctx, tts, ref_wav)
        golden_conds = tts.conds
        facts["ref_wav"] = {"path": "goldens/ref.wav", "sha256": sha256_file(ref_wav),
                            "made_by": "given with --ref-wav" if args.ref_wav is not None
                            else f"espeak-ng -v en-us -s 180, 0.3 s / 0.5 s of silence around: {export_bundle.REF_SENTENCE}"}
    if args.checkpoint is not None:
        tts.conds = load_conds(args.checkpoint / "conds.pt")
        voice_origin = "conds.pt of the checkpoint"
    else:
        if tts.conds is None:
            with timed("default voice: prepare_conditionals(ref.wav)"):
                tts.prepare_conditionals(str(ref_wav), exaggeration=GENERATION["exaggeration"])
        voice_origin = "ChatterboxTurboTTS.prepare_conditionals(goldens/ref.wav)"
    voice_shapes = export_bundle.write_voice(tts, out / "voice.safetensors")
    log(f"voice.safetensors ({voice_origin}): {voice_shapes}")

    export_components(ctx, tts)

    if want_goldens:
        tts.conds = golden_conds
        text_tokens, text_facts = text_goldens(ctx, tts, tok_path)
        with timed("T3 goldens (turbo)"):
            facts["t3"] = t3_goldens(ctx, tts, text_tokens)
        with timed("S3Gen goldens (meanflow)"):
            facts["s3gen"] = s3gen_goldens(ctx, tts)
        facts.update(text_facts)
        facts.update({
            "family": FAMILY, "seed": args.seed, "generation": GENERATION, "tags": tags,
            "tags_note": "added tokens 50257..50275 in this order; the upstream added_tokens.json order was not "
                         "available when this bundle was made, so for random bundles the order is an assumption "
                         "(a checkpoint's own tokenizer files decide for real weights)",
            "tokenizer_source": ("the checkpoint's tokenizer files" if args.checkpoint is not None else
                                 f"vocab.json / merges.txt derived from GPT-2's BPE ranks ({WHISPER_REQ} sdist, "
                                 f"{GPT2_TIKTOKEN_MEMBER}) + <|endoftext|> 50256 + the tags; "
                                 "AutoTokenizer.from_pretrained -> backend_tokenizer.save"),
            "voice_note": "the voice of goldens/ref.wav (ChatterboxTurboTTS.prepare_conditionals); voice.safetensors = "
                          + voice_origin,
        })
        export_bundle.write_goldens(ctx, facts)
    scratch.cleanup()

    manifest = write_manifest(ctx, tts, args, tags, [tok_path, out / "voice.safetensors"])
    verify_bundle.validate_manifest(manifest)
    total = dir_size(out)
    log(f"bundle {out}: {total / 1e6:.2f} MB in {sum(1 for p in out.rglob('*') if p.is_file())} files")
    if args.config == "tiny" and total > export_bundle.TINY_MAX_BYTES:
        raise ExportError(f"tiny bundle is {total / 1e6:.2f} MB, over the {export_bundle.TINY_MAX_BYTES / 1e6:.0f} MB limit")
    return manifest
