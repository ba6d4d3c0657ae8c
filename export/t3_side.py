"""T3 side of the export: VoiceEncoder and T3 (text/speech embeddings,
conditioning encoder, Llama decoder with KV cache + speech head), and the
T3 / sampler goldens.

Graphs (names exactly as docs/BUNDLE.md):
  voice_encoder    wav [1, samples] (16 kHz, trimmed)      -> embedding [1, 256]
  t3_text_embed    tokens [B, text_len]                     -> token_embeds [B, text_len, D], position_embeds [1, text_len, D]
  t3_speech_embed  tokens, positions [B, speech_len]        -> embeds [B, speech_len, D]
  t3_cond          speaker_emb [1, 256], prompt_embeds [1, prompt_len, D], exaggeration [1, 1, 1] -> cond [1, cond_len, D]
  t3_decoder       inputs_embeds [B, seq, D], past_len [1], past_key_i / past_value_i [B, H, capacity, hd]
                   -> logits [B, seq, 8194], present_* (the same buffers, updated in place: kv_cache.py)
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import librosa
import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from chatterbox.models.t3 import T3
from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.models.t3.modules.perceiver import Perceiver
from chatterbox.models.t3.modules.t3_config import T3Config
from chatterbox.models.voice_encoder import VoiceEncoder
from chatterbox.models.voice_encoder.config import VoiceEncConfig
from chatterbox.models.voice_encoder.voice_encoder import get_frame_step

import kv_cache
from common import ExportContext, load_safetensors, load_state_dict_strict, log, rel_error, seeded_init

# ----------------------------------------------------------------------------- configs

TINY_LLAMA = "Llama_tiny_cbx"
TINY_T3 = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8)
TINY_PERCEIVER_HEADS = 4
TINY_VE_HIDDEN = 64
VE_RATE = 1.3  # partial-utterance rate used by embeds_from_wavs (Resemble's default)
VE_MIN_COVERAGE = 0.8


def _register_tiny_llama() -> None:
    cfg = dict(LLAMA_CONFIGS["Llama_520M"])
    cfg.update(TINY_T3)
    LLAMA_CONFIGS[TINY_LLAMA] = cfg


class TinyVoiceEncConfig(VoiceEncConfig):
    ve_hidden_size = TINY_VE_HIDDEN


def build_voice_encoder(config: str, seed: int, checkpoint: Path | None, filename: str = "ve.safetensors") -> VoiceEncoder:
    """`filename`: the checkpoint's file (the multilingual checkpoint has `ve.pt`)."""
    if checkpoint is not None:
        ve = VoiceEncoder()
        load_state_dict_strict(ve, checkpoint / filename)
        return ve.eval()
    torch.manual_seed(seed)
    ve = VoiceEncoder(TinyVoiceEncConfig() if config == "tiny" else VoiceEncConfig())
    return seeded_init(ve, seed + 1).eval()


def build_t3(config: str, seed: int, checkpoint: Path | None, multilingual: bool = False) -> T3:
    """The reference T3: `T3Config.english_only()` or, `multilingual`, `T3Config.multilingual()`
    (text vocabulary 2454; checkpoint file t3_mtl23ls_v2.safetensors, as
    ChatterboxMultilingualTTS.from_local). Tiny: the tiny Llama and perceiver either way."""
    torch.manual_seed(seed)
    hp = T3Config.multilingual() if multilingual else T3Config.english_only()
    if config == "tiny":
        _register_tiny_llama()
        hp.llama_config_name = TINY_LLAMA
        t3 = T3(hp)
        d = TINY_T3["hidden_size"]
        t3.cond_enc.perceiver = Perceiver(32, d, d, TINY_PERCEIVER_HEADS)
    else:
        t3 = T3(hp)
    if checkpoint is not None:
        path = checkpoint / ("t3_mtl23ls_v2.safetensors" if multilingual else "t3_cfg.safetensors")
        state = load_safetensors(path)
        if "model" in state.keys():
            state = state["model"][0]
        load_state_dict_strict(t3, path, state=state)
    else:
        seeded_init(t3, seed + 2)
    # nothing needs attention weights: use SDPA (the reference's output_attentions forces eager)
    t3.tfmr.config._attn_implementation = "sdpa"
    return t3.eval()


def t3_config_numbers(t3: T3) -> dict:
    c = t3.cfg
    return {
        "hidden_size": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "num_heads": c.num_attention_heads,
        "num_kv_heads": c.num_key_value_heads,
        "head_dim": getattr(c, "head_dim", c.hidden_size // c.num_attention_heads),
        "intermediate_size": c.intermediate_size,
        "cond_len": 1 + t3.cond_enc.perceiver.pre_attention_query.shape[1] + 1,
        "speaker_embed_size": t3.hp.speaker_embed_size,
        "prompt_max_tokens": t3.hp.speech_cond_prompt_len,
        "prompt_seconds": 6.0,
    }


# ----------------------------------------------------------------------------- graphs


class VoiceEncoderGraph(nn.Module):
    """Trimmed 16 kHz wav -> utterance embedding, exactly `VoiceEncoder.embeds_from_wavs`
    without the trim: librosa mel (|STFT|^2 of a reflect-padded, periodic-Hann framed
    signal, slaney mel basis), partial windows (rate 1.3 -> step 77 frames, 160-frame
    windows, min coverage 0.8, zero padding), LSTM + proj + ReLU + L2 per window,
    mean, L2."""

    def __init__(self, ve: VoiceEncoder):
        super().__init__()
        hp = ve.hp
        self.lstm, self.proj, self.final_relu = ve.lstm, ve.proj, hp.ve_final_relu
        self.n_fft, self.hop = hp.n_fft, hp.hop_size
        assert hp.win_size == hp.n_fft and hp.preemphasis == 0 and hp.mel_type == "amp" and not hp.normalized_mels
        self.power = hp.mel_power
        self.win = hp.ve_partial_frames
        self.step = get_frame_step(0.5, VE_RATE, hp)
        # smallest remainder r with (r + win - step) / win >= min_coverage, as the reference computes it
        self.min_rem = next(r for r in range(self.step + 1) if (r + (self.win - self.step)) / self.win >= VE_MIN_COVERAGE)
        self.num_mels = hp.num_mels
        window = scipy.signal.get_window("hann", hp.win_size, fftbins=True).astype(np.float64)
        n_freq = self.n_fft // 2 + 1
        k = np.arange(n_freq)[:, None]
        n = np.arange(self.n_fft)[None, :]
        ang = 2.0 * np.pi * ((k * n) % self.n_fft) / self.n_fft
        basis = np.concatenate([np.cos(ang) * window, -np.sin(ang) * window], 0)[:, None, :]
        self.register_buffer("dft", torch.from_numpy(basis.astype(np.float32)), persistent=False)
        mel = librosa.filters.mel(sr=hp.sample_rate, n_fft=hp.n_fft, n_mels=hp.num_mels, fmin=hp.fmin, fmax=hp.fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel.astype(np.float32)), persistent=False)
        self.n_freq = n_freq

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.pad(wav[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        spec = F.conv1d(x, self.dft, stride=self.hop)  # [1, 2F, T]
        re, im = spec[:, : self.n_freq], spec[:, self.n_freq :]
        mag = re * re + im * im
        if self.power != 2.0:
            mag = mag ** (self.power / 2.0)
        return torch.matmul(self.mel_basis, mag)[0].transpose(0, 1)  # [T, M]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mel = self.mel(wav)
        n_frames = torch._shape_as_tensor(mel)[0]
        a = torch.clamp(n_frames - (self.win - self.step), min=0)
        n = torch.div(a, self.step, rounding_mode="floor")
        r = a - n * self.step
        n_wins = n + ((n == 0) | (r >= self.min_rem)).to(n.dtype)
        starts = torch.arange(n_wins) * self.step
        idx = starts[:, None] + torch.arange(self.win)[None, :]  # [n_wins, win]
        padded = torch.cat([mel, torch.zeros(self.win, self.num_mels, dtype=mel.dtype)], 0)
        partials = padded[idx]  # [n_wins, win, M]
        _, (hidden, _) = self.lstm(partials)
        e = self.proj(hidden[-1])
        if self.final_relu:
            e = F.relu(e)
        e = e / torch.linalg.norm(e, dim=1, keepdim=True)
        e = e.mean(dim=0, keepdim=True)
        return e / torch.linalg.norm(e, dim=1, keepdim=True)


class TextEmbedGraph(nn.Module):
    def __init__(self, t3: T3):
        super().__init__()
        self.text_emb, self.pos = t3.text_emb, t3.text_pos_emb.emb

    def forward(self, tokens):
        pos = self.pos(torch.arange(tokens.shape[1]))[None]
        return self.text_emb(tokens), pos


class SpeechEmbedGraph(nn.Module):
    def __init__(self, t3: T3):
        super().__init__()
        self.speech_emb, self.pos = t3.speech_emb, t3.speech_pos_emb.emb

    def forward(self, tokens, positions):
        return self.speech_emb(tokens) + self.pos(positions)


class CondGraph(nn.Module):
    def __init__(self, t3: T3):
        super().__init__()
        self.cond_enc = t3.cond_enc

    def forward(self, speaker_emb, prompt_embeds, exaggeration):
        placeholder = torch.zeros(1, 1, dtype=torch.long)  # the encoder only checks it is set
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=placeholder,
                      cond_prompt_speech_emb=prompt_embeds, emotion_adv=exaggeration)
        return self.cond_enc(cond)


@contextmanager
def eager_attention(tfmr):
    """The HF backbone with eager attention and `output_attentions` on (what the reference's
    AlignmentStreamAnalyzer switches it to), restored afterwards."""
    cfg = tfmr.config
    saved = (cfg._attn_implementation, cfg.output_attentions)
    cfg._attn_implementation = "eager"
    cfg.output_attentions = True
    try:
        yield
    finally:
        cfg.output_attentions = False
        cfg._attn_implementation = saved[0]
        cfg.output_attentions = saved[1]


class ReferenceDecoder(nn.Module):
    """The reference forward of one T3 pass with a KV cache, either family: the HF backbone
    (Llama, or Turbo's GPT2Model) with a DynamicCache holding `past` ([B, H, past, hd]
    tensors), then the speech head. Not exported: the in-place graphs are checked against it.
    With `alignment_heads` ((layer, head) pairs) the pass runs with eager attention and
    `output_attentions`, and also returns the mean of those heads' attention probabilities
    for batch row 0, [seq, past + seq] (what AlignmentStreamAnalyzer averages)."""

    def __init__(self, t3, alignment_heads=None):
        super().__init__()
        self.tfmr, self.head = t3.tfmr, t3.speech_head
        self.n_layers = t3.cfg.num_hidden_layers
        self.alignment_heads = [tuple(h) for h in alignment_heads or ()]

    def forward(self, inputs_embeds, past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.tfmr.config)
        for i in range(self.n_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        # positions continue from the cache length (the HF model's own default)
        if self.alignment_heads:
            with eager_attention(self.tfmr):
                out = self.tfmr(inputs_embeds=inputs_embeds, past_key_values=cache, use_cache=True,
                                output_attentions=True)
            aligned = torch.stack([out.attentions[layer][0, head] for layer, head in self.alignment_heads]).mean(0)
        else:
            out = self.tfmr(inputs_embeds=inputs_embeds, past_key_values=cache, use_cache=True)
        presents = []
        for i in range(self.n_layers):
            layer = out.past_key_values.layers[i]
            presents += [layer.keys, layer.values]
        if self.alignment_heads:
            return self.head(out.last_hidden_state), presents, aligned
        return self.head(out.last_hidden_state), presents


class DecoderGraph(nn.Module):
    """One Llama pass over `inputs_embeds` on the in-place KV cache (kv_cache.py), then
    the speech head: the reference layers' modules (norms, projections, rotary, MLP), with
    the cache update and attention in one GroupQueryAttention per layer.

    `alignment_heads` ((layer, head) pairs; the multilingual model's) adds the last output
    `alignment` [seq, capacity]: for batch row 0, the mean over those heads (in the order
    given, as AlignmentStreamAnalyzer stacks them) of their attention probabilities, from
    the layer's rotary'd query of the head and the present key cache of its KV head
    (`kv_cache.attention_probs`; GroupQueryAttention does not return probabilities)."""

    def __init__(self, t3: T3, alignment_heads=None):
        super().__init__()
        self.tfmr, self.head = t3.tfmr, t3.speech_head
        c = t3.cfg
        self.n_heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", c.hidden_size // c.num_attention_heads)
        self.alignment_heads = [tuple(int(v) for v in h) for h in alignment_heads or ()]
        for layer, head in self.alignment_heads:
            if not (0 <= layer < c.num_hidden_layers and 0 <= head < self.n_heads):
                raise ValueError(f"alignment head ({layer}, {head}) outside {c.num_hidden_layers} layers x {self.n_heads} heads")

    def forward(self, inputs_embeds, past_len, *past):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        lengths = kv_cache.CacheLengths(inputs_embeds, past_len)
        h = inputs_embeds
        cos, sin = self.tfmr.rotary_emb(h, lengths.positions)
        presents = []
        aligned = {}
        for i, layer in enumerate(self.tfmr.layers):
            a = layer.self_attn
            x = layer.input_layernorm(h)
            heads = (*x.shape[:-1], -1, self.head_dim)
            q = a.q_proj(x).view(heads).transpose(1, 2)
            k = a.k_proj(x).view(heads).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            out, pk, pv = kv_cache.attend(q.transpose(1, 2).flatten(2), k.transpose(1, 2).flatten(2), a.v_proj(x),
                                          past[2 * i], past[2 * i + 1], lengths, self.n_heads, self.kv_heads,
                                          a.scaling)
            for n, (al, ah) in enumerate(self.alignment_heads):
                if al == i:
                    kv_head = ah // (self.n_heads // self.kv_heads)
                    aligned[n] = kv_cache.attention_probs(q[0, ah], pk[0, kv_head], lengths, a.scaling)
            h = h + a.o_proj(out)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
            presents += [pk, pv]
        logits = self.head(self.tfmr.norm(h))
        if self.alignment_heads:
            return (logits, *presents, torch.stack([aligned[n] for n in range(len(aligned))]).mean(0))
        return (logits, *presents)


def export_decoder(ctx: ExportContext, name: str, graph: nn.Module, reference: nn.Module, n_layers: int, d: int,
                   kv_heads: int, hd: int, checks: list, g: torch.Generator) -> None:
    """t3_decoder of either family: the in-place graph module checked against the
    reference forward, then exported and checked in ONNX Runtime on (batch, seq, past)
    cases (batch 1 wherever seq > 1 follows a cached prefix: ORT's kernel needs it).
    A graph with alignment heads gets the `alignment` output."""
    graph = graph.eval()
    kv_cache.check_against_reference(name, graph, reference.eval(), checks, g, n_layers, d, kv_heads, hd)
    alignment = bool(getattr(graph, "alignment_heads", None))
    ins, outs = kv_cache.io_names(n_layers, alignment)

    def dec_in(b, s, p):
        return kv_cache.example_inputs(g, n_layers, d, kv_heads, hd, b, s, p, p + s + 3)

    ctx.export(name, graph, dec_in(2, 3, 4), ins, outs, kv_cache.dynamic_axes(n_layers, alignment),
               [dec_in(*c) for c in checks], fp16=True,
               lengths=[{"batch": b, "seq": s, "past": p, "capacity": p + s + 3} for b, s, p in checks])


# ----------------------------------------------------------------------------- export


def _speech_noise(n: int, seed: int) -> np.ndarray:
    """A deterministic speech-like test signal (harmonics + noise bursts + silence)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    ph = 2 * np.pi * np.cumsum(f0) / 16000.0
    x = sum(np.sin(k * ph) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 0.2
    x = x + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def export_voice_encoder(ctx: ExportContext, ve: VoiceEncoder) -> None:
    """voice_encoder: the graph module is checked against the reference
    `embeds_from_wavs` (no trim) at three lengths, then exported."""
    veg = VoiceEncoderGraph(ve).eval()
    wavs = [torch.from_numpy(_speech_noise(n, ctx.seed + i))[None] for i, n in enumerate((40000, 12345, 16000 * 3 + 77))]
    with torch.no_grad():
        for w in wavs:  # graph module vs the reference path (no trim: trim is host code)
            ref = ve.embeds_from_wavs([w[0].numpy()], sample_rate=16000, trim_top_db=None)
            err = rel_error(ref, veg(w).numpy())
            log(f"  voice_encoder module vs reference embeds_from_wavs ({w.shape[1]} samples): rel error {err:.3g}")
            if err > 1e-4:
                raise RuntimeError(f"voice_encoder graph module differs from the reference: {err:.3g}")
    ctx.export("voice_encoder", veg, (wavs[0],), ["wav"], ["embedding"],
               {"wav": {1: "samples"}}, [(w,) for w in wavs[1:]] + [(wavs[0],)])


def export_components(ctx: ExportContext, tts, alignment_heads=None) -> None:
    """voice_encoder and the T3 graphs; `alignment_heads` (multilingual) gives t3_decoder
    its `alignment` output."""
    t3, ve = tts.t3, tts.ve
    text_vocab = t3.hp.text_tokens_dict_size
    cfg = t3.cfg
    d = cfg.hidden_size
    g = torch.Generator().manual_seed(ctx.seed + 100)

    export_voice_encoder(ctx, ve)

    # t3_text_embed
    def tok(b, n, hi):
        return torch.randint(0, hi, (b, n), generator=g)

    ctx.export("t3_text_embed", TextEmbedGraph(t3), (tok(2, 9, text_vocab),), ["tokens"], ["token_embeds", "position_embeds"],
               {"tokens": {0: "batch", 1: "text_len"}, "token_embeds": {0: "batch", 1: "text_len"},
                "position_embeds": {1: "text_len"}},
               [(tok(2, 5, text_vocab),), (tok(1, 37, text_vocab),)])

    # t3_speech_embed
    def sp(b, n, start=0):
        return tok(b, n, 8194), (torch.arange(n) + start)[None].expand(b, n).contiguous()

    ctx.export("t3_speech_embed", SpeechEmbedGraph(t3), sp(2, 7), ["tokens", "positions"], ["embeds"],
               {"tokens": {0: "batch", 1: "speech_len"}, "positions": {0: "batch", 1: "speech_len"},
                "embeds": {0: "batch", 1: "speech_len"}},
               [sp(2, 1, 40), sp(1, 150)])

    # t3_cond
    def cond_in(p, ex):
        spk = torch.randn(1, t3.hp.speaker_embed_size, generator=g)
        spk = spk / spk.norm()
        return spk, torch.randn(1, p, d, generator=g) * 0.1, torch.full((1, 1, 1), ex)

    ctx.export("t3_cond", CondGraph(t3), cond_in(20, 0.5), ["speaker_emb", "prompt_embeds", "exaggeration"], ["cond"],
               {"prompt_embeds": {1: "prompt_len"}, "cond": {1: "cond_len"}},
               [cond_in(150, 0.5), cond_in(7, 1.2)])

    # t3_decoder
    hd = getattr(cfg, "head_dim", d // cfg.num_attention_heads)
    export_decoder(ctx, "t3_decoder", DecoderGraph(t3, alignment_heads), ReferenceDecoder(t3, alignment_heads),
                   cfg.num_hidden_layers, d, cfg.num_key_value_heads, hd,
                   [(2, 17, 0), (2, 1, 23), (1, 5, 9), (2, 1, 40)] + ([(1, 1, 30), (1, 12, 0)] if alignment_heads else []), g)


# ----------------------------------------------------------------------------- goldens

TF_SPEECH_LEN = 12
SAMPLER_STEPS = (0, 4, 11)
SAMPLER_MAX_NEW_TOKENS = 16


def _backend(t3: T3, alignment_stream_analyzer=None):
    from chatterbox.models.t3.inference.t3_hf_backend import T3HuggingfaceBackend

    return T3HuggingfaceBackend(config=t3.cfg, llama=t3.tfmr, speech_enc=t3.speech_emb, speech_head=t3.speech_head,
                                alignment_stream_analyzer=alignment_stream_analyzer)


def _fresh_cond(voice_t3: T3Cond, exaggeration: float) -> T3Cond:
    return T3Cond(speaker_emb=voice_t3.speaker_emb.clone(),
                  cond_prompt_speech_tokens=voice_t3.cond_prompt_speech_tokens.clone(),
                  emotion_adv=exaggeration * torch.ones(1, 1, 1))


def new_alignment_analyzer(t3: T3, len_cond: int, text_len: int):
    """The reference AlignmentStreamAnalyzer exactly as T3.inference builds it for a
    multilingual config (hooks on the aligned heads' layers; switches the backbone to eager
    attention with output_attentions)."""
    from chatterbox.models.t3.inference.alignment_stream_analyzer import AlignmentStreamAnalyzer

    return AlignmentStreamAnalyzer(t3.tfmr, None, text_tokens_slice=(len_cond, len_cond + text_len),
                                   alignment_layer_idx=9, eos_idx=t3.hp.stop_speech_token)


def cached_calls(backend, x: torch.Tensor, n_speech: int, output_attentions: bool = False):
    """The teacher-forced inputs `x` (cond | text | BOS | speech_emb(tf[j]) + pos(j), j < S)
    through the KV cache as T3.inference feeds them: one prefill up to tf[0], then tf[j]
    alone for j = 1..S-1. Yields (j, backend output)."""
    prefill = x.shape[1] - n_speech + 1
    o = backend(inputs_embeds=x[:, :prefill], past_key_values=None, use_cache=True, output_attentions=output_attentions,
                output_hidden_states=True, return_dict=True)
    yield 0, o
    past = o.past_key_values
    for j in range(1, n_speech):
        o = backend(inputs_embeds=x[:, prefill + j - 1:][:, :1], past_key_values=past, output_attentions=output_attentions,
                    output_hidden_states=True, return_dict=True)
        past = o.past_key_values
        yield j, o


def teacher_forced_inputs(t3: T3, voice_t3: T3Cond, text_tokens: torch.Tensor, tf: torch.Tensor, gen: dict):
    """(x [2, T0 - 1 + S, D], len_cond): the layout of T3.inference for the teacher-forced
    tokens `tf` [1, S] (tf[0] = BOS): cond | text (uncond row's text embeddings zeroed) |
    BOS at speech position 0 | speech_emb(tf[j]) + speech_pos(j), j < S."""
    text2 = torch.cat([text_tokens, text_tokens]).long()
    hp = t3.hp
    embeds, len_cond = t3.prepare_input_embeds(t3_cond=_fresh_cond(voice_t3, gen["exaggeration"]), text_tokens=text2,
                                               speech_tokens=hp.start_speech_token * torch.ones_like(text2[:, :1]),
                                               cfg_weight=gen["cfg_weight"])
    n = tf.shape[1]
    sp = t3.speech_emb(tf) + t3.speech_pos_emb.get_fixed_embedding(torch.arange(n)[None])
    return torch.cat([embeds, sp.expand(2, -1, -1)], 1), len_cond


@torch.inference_mode()
def inference_replica(t3: T3, voice_t3: T3Cond, text2: torch.Tensor, gen: dict, max_new_tokens: int,
                      on_step=None, on_analyzer=None) -> list:
    """The loop of T3.inference, step by step (the caller seeds torch): prefill with BOS
    twice, CFG, for a multilingual config the reference AlignmentStreamAnalyzer (built as
    T3.inference builds it, fed the last generated token), repetition penalty, temperature,
    min_p, top_p, multinomial draw, stop at EOS. `on_step(i, raw logits [2, V], generated ids
    [1, n], processed logits [1, V])` and `on_analyzer(i, analyzer, logits before step, logits
    after step, last token)` observe it. Returns the drawn tokens."""
    from transformers.generation.logits_process import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                                        TopPLogitsWarper)

    hp = t3.hp
    cfg_weight, temperature = gen["cfg_weight"], gen["temperature"]
    top_p_warper = TopPLogitsWarper(top_p=gen["top_p"])
    min_p_warper = MinPLogitsWarper(min_p=gen["min_p"])
    rep = RepetitionPenaltyLogitsProcessor(penalty=float(gen["repetition_penalty"]))
    embeds, len_cond = t3.prepare_input_embeds(t3_cond=_fresh_cond(voice_t3, gen["exaggeration"]), text_tokens=text2,
                                               speech_tokens=hp.start_speech_token * torch.ones_like(text2[:, :1]),
                                               cfg_weight=cfg_weight)
    analyzer = new_alignment_analyzer(t3, len_cond, text2.size(-1)) if hp.is_multilingual else None
    backend = _backend(t3, analyzer)
    attn = analyzer is not None  # T3.inference asks for attentions; only the analyzer's eager mode uses them
    bos = torch.tensor([[hp.start_speech_token]])
    bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)
    output = backend(inputs_embeds=torch.cat([embeds, torch.cat([bos_embed, bos_embed])], 1), past_key_values=None,
                     use_cache=True, output_attentions=attn, output_hidden_states=True, return_dict=True)
    past = output.past_key_values
    generated = bos.clone()
    sampled = []
    for i in range(max_new_tokens):
        logits_step = output.logits[:, -1, :]
        c, u = logits_step[0:1], logits_step[1:2]
        logits = c + torch.as_tensor(cfg_weight, dtype=c.dtype) * (c - u)
        if analyzer is not None:
            last_token = generated[0, -1].item()
            before = logits.clone()  # step() writes into its argument
            logits = analyzer.step(logits, next_token=last_token)
            if on_analyzer is not None:
                on_analyzer(i, analyzer, before, logits.clone(), last_token)
        ids = generated[:1]
        logits = rep(ids, logits)
        if temperature != 1.0:
            logits = logits / temperature
        logits = min_p_warper(ids, logits)
        logits = top_p_warper(ids, logits)
        if on_step is not None:
            on_step(i, logits_step, generated, logits)
        probs = torch.softmax(logits, dim=-1)
        nxt = torch.multinomial(probs, num_samples=1)
        sampled.append(int(nxt))
        generated = torch.cat([generated, nxt], 1)
        if int(nxt) == hp.stop_speech_token:
            break
        e = t3.speech_emb(nxt) + t3.speech_pos_emb.get_fixed_embedding(i + 1)
        output = backend(inputs_embeds=torch.cat([e, e]), past_key_values=past, output_attentions=attn,
                         output_hidden_states=True, return_dict=True)
        past = output.past_key_values
    return sampled


@torch.inference_mode()
def make_goldens(ctx: ExportContext, tts, text_tokens: torch.Tensor, gen: dict, tf_repeat_at: int | None = None,
                 on_analyzer=None) -> dict:
    """T3 goldens: conditioning, teacher-forced logits and sampler steps, all by the
    reference code (T3.prepare_conditioning / prepare_input_embeds, T3HuggingfaceBackend,
    the HF logits processors in the order of T3.inference; for a multilingual config its
    AlignmentStreamAnalyzer too). `tf_repeat_at` = k makes tf[k] = tf[k - 1] (two identical
    consecutive teacher-forced tokens). `on_analyzer` observes the sampler replica's analyzer
    (see inference_replica). Returns facts for goldens.json."""
    t3 = tts.t3
    hp = t3.hp
    cfg_weight, temperature = gen["cfg_weight"], gen["temperature"]
    exaggeration = gen["exaggeration"]

    cond = t3.prepare_conditioning(_fresh_cond(tts.conds.t3, exaggeration))
    ctx.add_golden("t3_cond", cond, f"T3.prepare_conditioning(voice, emotion_adv={exaggeration}) (speaker 1 + perceiver 32 + emotion 1)")

    # teacher forcing, in the layout of T3.inference: cond | text (uncond row zeroed) | BOS(pos 0) | then
    # the loop inputs speech_emb(tf[j]) + speech_pos(j), tf[0] = BOS
    g = torch.Generator().manual_seed(ctx.seed + 7)
    tf = torch.cat([torch.tensor([[hp.start_speech_token]]),
                    torch.randint(0, 6561, (1, TF_SPEECH_LEN - 1), generator=g)], 1)
    how = "fixed speech tokens, BOS (6561) first, the rest seeded uniform < 6561"
    if tf_repeat_at is not None:
        tf[0, tf_repeat_at] = tf[0, tf_repeat_at - 1]
        how += f", then tf[{tf_repeat_at}] = tf[{tf_repeat_at - 1}] (two identical consecutive tokens)"
    x, _ = teacher_forced_inputs(t3, tts.conds.t3, text_tokens, tf, gen)
    backend = _backend(t3)
    out = backend(inputs_embeds=x, past_key_values=None, use_cache=True, output_attentions=False,
                  output_hidden_states=True, return_dict=True)
    tf_logits = out.logits[:, -TF_SPEECH_LEN:]
    ctx.add_golden("tf_speech_tokens", tf, how)
    ctx.add_golden("tf_logits", tf_logits,
                   "T3HuggingfaceBackend logits (both CFG rows) at the last S positions of: cond | text_emb+text_pos "
                   "(row 1 text_emb zeroed) | speech_emb(6561)+speech_pos(0) | speech_emb(tf[j])+speech_pos(j), j<S "
                   "(the layout of T3.inference, where BOS appears twice); one pass, no cache")

    # same thing with the KV cache, step by step, as the engine runs it
    steps = [o.logits[:, -1] for _, o in cached_calls(backend, x, TF_SPEECH_LEN)]
    err = rel_error(tf_logits.numpy(), torch.stack(steps, 1).numpy())
    log(f"  tf_logits one-pass vs cached steps: rel error {err:.3g}")

    # sampler: the loop of T3.inference, recording steps k
    def record(i, logits_step, generated, logits):
        if i in SAMPLER_STEPS:
            ctx.add_golden(f"sampler_logits_{i}", logits_step, f"raw T3 logits (cond, uncond rows) at sampler step {i}")
            ctx.add_golden(f"sampler_history_{i}", generated[0].clone(), f"ids before step {i} (BOS first) for the repetition penalty")
            ctx.add_golden(f"sampler_processed_{i}", logits,
                           f"step {i}: CFG (w={cfg_weight}), "
                           + ("the AlignmentStreamAnalyzer step (analyzer_sampled_out), " if hp.is_multilingual else "")
                           + f"repetition penalty {gen['repetition_penalty']}, "
                           f"/temperature {temperature}, min_p {gen['min_p']}, top_p {gen['top_p']} (-inf where removed)")

    text2 = torch.cat([text_tokens, text_tokens]).long()
    sampler_seed = ctx.seed + 11
    torch.manual_seed(sampler_seed)
    sampled = inference_replica(t3, tts.conds.t3, text2, gen, SAMPLER_MAX_NEW_TOKENS, record, on_analyzer)
    # the replica above must be the reference loop: same torch seed -> same tokens
    torch.manual_seed(sampler_seed)
    ref_tokens = t3.inference(t3_cond=_fresh_cond(tts.conds.t3, exaggeration), text_tokens=text2,
                              max_new_tokens=len(sampled), temperature=temperature, cfg_weight=cfg_weight,
                              repetition_penalty=gen["repetition_penalty"], min_p=gen["min_p"], top_p=gen["top_p"])
    if ref_tokens[0].tolist() != sampled:
        raise RuntimeError(f"sampler replica diverges from T3.inference: {sampled} vs {ref_tokens[0].tolist()}")
    log(f"  sampler replica = T3.inference under torch seed {sampler_seed}: {len(sampled)} tokens")
    ctx.add_golden("t3_sampled_tokens", torch.tensor(sampled), f"T3.inference tokens with torch.manual_seed({sampler_seed}) "
                   "(torch's RNG: informative only, the engine's RNG differs)")
    return {"tf_speech_len": TF_SPEECH_LEN, "tf_seed": ctx.seed + 7, "sampler_steps": list(SAMPLER_STEPS),
            "sampler_torch_seed": sampler_seed, "tf_cached_vs_one_pass_rel_error": err}
