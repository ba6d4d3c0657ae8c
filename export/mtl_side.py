"""The multilingual family (`--family multilingual`): ChatterboxMultilingualTTS of
chatterbox-tts 0.1.7 (chatterbox/mtl_tts.py).

Everything but T3 is the original family's, built by the same code with the same seeds
(VoiceEncoder, S3 tokenizer, CAM++, S3Gen, Perth; the tiny graphs come out byte-identical
to onnx/tiny's). What differs, and lives here or is switched on from here:

* T3 is `T3(T3Config.multilingual())` (text vocabulary 2454; tiny: the original tiny Llama).
  Its `t3_decoder` has one more output, `alignment` (t3_side.DecoderGraph with the aligned
  heads): what the reference's AlignmentStreamAnalyzer reads from its attention hooks.
* The aligned heads: the reference's `LLAMA_ALIGNED_HEADS` for the full config. The tiny
  Llama (2 layers, 4 heads) has no layer 9 / 12 / 13, so for the tiny config the module
  constant is patched to TINY_ALIGNED_HEADS while the reference analyzer runs.
* Text: MTLTokenizer (lowercase, NFKD, per-language steps, "[lang]" prefix, spaces ->
  [SPACE]) with `tokenizer.json` and the Cangjie table `Cangjie5_TC.json` in the bundle,
  and mtl_tts.punc_norm.
* Checkpoint (the upstream layout, as ChatterboxMultilingualTTS.from_local reads it):
  ve.pt, t3_mtl23ls_v2.safetensors (state possibly under "model"[0]), s3gen.pt,
  grapheme_mtl_merged_expanded_v1.json, Cangjie5_TC.json, conds.pt.
* Generation defaults of ChatterboxMultilingualTTS.generate (repetition penalty 2.0).
* Goldens: text ids, the teacher-forced alignment rows, the reference analyzer replayed
  over the teacher-forced tokens and over the sampler replica (docs/BUNDLE.md).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from common import ExportContext, ExportError, log, rel_error, require_checkpoint

FAMILY = "multilingual"
TOKENIZER_FILE = "grapheme_mtl_merged_expanded_v1.json"  # the checkpoint's name for tokenizer.json
CANGJIE_FILE = "Cangjie5_TC.json"
CHECKPOINT_FILES = ("ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", TOKENIZER_FILE, CANGJIE_FILE, "conds.pt")
REPO = Path(__file__).resolve().parent.parent
# the committed vocabulary files of random bundles (export/mtl_vocab.py makes them)
RANDOM_VOCAB_DIR = REPO / "onnx" / "tiny-multilingual"

# (layer, head) pairs for the tiny Llama, in place of the reference's LLAMA_ALIGNED_HEADS
TINY_ALIGNED_HEADS = ((1, 3), (1, 1), (0, 2))

# ChatterboxMultilingualTTS.generate's defaults (max_new_tokens: its hard-coded 1000); flow as the original
GENERATION = {"exaggeration": 0.5, "cfg_weight": 0.5, "temperature": 0.8, "min_p": 0.05, "top_p": 1.0,
              "repetition_penalty": 2.0, "flow_steps": 10, "flow_cfg_rate": 0.7, "max_new_tokens": 1000}

GOLDEN_LANGUAGE = "fr"
GOLDEN_TEXT = "ça   va…"
TF_REPEAT_AT = 5  # tf[5] = tf[4]: the analyzer's token-repetition rule fires at teacher-forced step 5


def languages() -> list:
    """The reference's SUPPORTED_LANGUAGES, in its order."""
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

    return [{"id": k, "name": v} for k, v in SUPPORTED_LANGUAGES.items()]


def alignment_heads(config: str) -> list:
    """[[layer, head], ...]: the reference's LLAMA_ALIGNED_HEADS, or TINY_ALIGNED_HEADS."""
    from chatterbox.models.t3.inference import alignment_stream_analyzer as asa

    heads = TINY_ALIGNED_HEADS if config == "tiny" else asa.LLAMA_ALIGNED_HEADS
    return [[int(layer), int(head)] for layer, head in heads]


@contextmanager
def reference_aligned_heads(config: str):
    """The reference analyzer module with the heads of `config` (patched for tiny)."""
    from chatterbox.models.t3.inference import alignment_stream_analyzer as asa

    saved = asa.LLAMA_ALIGNED_HEADS
    asa.LLAMA_ALIGNED_HEADS = [tuple(h) for h in alignment_heads(config)]
    try:
        yield
    finally:
        asa.LLAMA_ALIGNED_HEADS = saved


# ----------------------------------------------------------------------------- checkpoint, vocabulary


def check_checkpoint(ckpt: Path) -> None:
    require_checkpoint(ckpt, CHECKPOINT_FILES)


def vocab_sources(checkpoint: Path | None) -> dict:
    """{bundle name: bytes} of tokenizer.json and Cangjie5_TC.json: the checkpoint's
    grapheme_mtl_merged_expanded_v1.json / Cangjie5_TC.json, or the committed files of the
    random bundles. Read before the output folder is emptied (it may be their folder)."""
    src = {"tokenizer.json": (checkpoint / TOKENIZER_FILE) if checkpoint else RANDOM_VOCAB_DIR / "tokenizer.json",
           CANGJIE_FILE: (checkpoint or RANDOM_VOCAB_DIR) / CANGJIE_FILE}
    out = {}
    for name, path in src.items():
        if not path.is_file():
            raise ExportError(f"{path}: missing" + ("" if checkpoint else " (the random bundles' vocabulary: "
                                                     "export/mtl_vocab.py writes it)"))
        out[name] = path.read_bytes()
    return out


@contextmanager
def _cangjie_from(path: Path):
    """MTLTokenizer's Cangjie table from `path` (the reference fetches Cangjie5_TC.json with
    hf_hub_download; the exporter runs offline) and its pkuseg segmenter as far as it can be
    loaded (spacy_pkuseg downloads its model on first use; without it the reference itself
    falls back to no segmentation, which only concerns Chinese)."""
    from chatterbox.models.tokenizers import tokenizer as mtl_tok

    def local_download(repo_id=None, filename=None, **_kw):
        if filename != CANGJIE_FILE:
            raise FileNotFoundError(f"{repo_id}/{filename}: only {CANGJIE_FILE} is available offline")
        return str(path)

    def init_segmenter(self):
        try:
            from spacy_pkuseg import pkuseg

            self.segmenter = pkuseg()
        except Exception:  # noqa: BLE001 - no network: its model cannot be fetched
            self.segmenter = None

    saved = (mtl_tok.hf_hub_download, mtl_tok.ChineseCangjieConverter._init_segmenter)
    mtl_tok.hf_hub_download = local_download
    mtl_tok.ChineseCangjieConverter._init_segmenter = init_segmenter
    try:
        yield
    finally:
        mtl_tok.hf_hub_download, mtl_tok.ChineseCangjieConverter._init_segmenter = saved


def load_tokenizer(tokenizer_path: Path, cangjie_path: Path):
    """The reference MTLTokenizer over the bundle's tokenizer.json and Cangjie table."""
    from chatterbox.models.tokenizers import MTLTokenizer

    try:
        with _cangjie_from(cangjie_path):
            tok = MTLTokenizer(str(tokenizer_path))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{tokenizer_path}: not a usable multilingual tokenizer ({type(e).__name__}: {e})") from None
    if len(tok.cangjie_converter.word2cj) == 0:
        raise ExportError(f"{cangjie_path}: no Cangjie entries read (expected a JSON list of 'glyph\\tcode' strings)")
    vocab = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab != 2454:
        raise ExportError(f"{tokenizer_path}: {vocab} ids, the multilingual T3 has 2454")
    return tok


def text_config(tok) -> dict:
    """config.text of a multilingual bundle (the original's keys, plus languages and cangjie)."""
    ids = {t: tok.tokenizer.token_to_id(t) for t in ("[START]", "[STOP]", "[SPACE]", "[UNK]")}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise ExportError(f"tokenizer.json has no {missing}")
    if (ids["[START]"], ids["[STOP]"]) != (255, 0):
        raise ExportError(f"tokenizer.json: [START] = {ids['[START]']}, [STOP] = {ids['[STOP]']}; T3 needs 255 and 0")
    langs = languages()
    no_tag = [lang["id"] for lang in langs if tok.tokenizer.token_to_id(f"[{lang['id']}]") is None]
    if no_tag:
        log(f"WARNING tokenizer.json has no language token for {no_tag}")
    return {"space_token": ids["[SPACE]"], "unk_token": ids["[UNK]"], "languages": langs, "cangjie": CANGJIE_FILE}


# ----------------------------------------------------------------------------- goldens


def text_goldens(ctx: ExportContext, tts) -> tuple[torch.Tensor, dict]:
    """text_tokens as ChatterboxMultilingualTTS.generate makes them: mtl punc_norm, then
    MTLTokenizer.text_to_tokens(text, language_id), [START] / [STOP] around (one row)."""
    from chatterbox.mtl_tts import punc_norm

    norm = punc_norm(GOLDEN_TEXT)
    seen = []
    inner = tts.tokenizer.tokenizer

    class Spy:  # records the exact string MTLTokenizer.encode hands to tokenizers
        def encode(self, s, *a, **k):
            seen.append(s)
            return inner.encode(s, *a, **k)

        def __getattr__(self, name):
            return getattr(inner, name)

    tts.tokenizer.tokenizer = Spy()
    try:
        ids = tts.tokenizer.text_to_tokens(norm, language_id=GOLDEN_LANGUAGE).long()
    finally:
        tts.tokenizer.tokenizer = inner
    hp = tts.t3.hp
    text_tokens = torch.nn.functional.pad(torch.nn.functional.pad(ids, (1, 0), value=hp.start_text_token),
                                          (0, 1), value=hp.stop_text_token)
    ctx.add_golden("text_tokens", text_tokens, f"[START] + MTLTokenizer.text_to_tokens(punc_norm(text), "
                   f"language_id={GOLDEN_LANGUAGE!r}) + [STOP] (mtl_tts.punc_norm; as ChatterboxMultilingualTTS.generate)")
    unk = inner.token_to_id("[UNK]")
    seg = tts.tokenizer.cangjie_converter.segmenter
    facts = {"text": GOLDEN_TEXT, "language": GOLDEN_LANGUAGE, "normalized_text": norm, "tokenizer_input": seen[0],
             "text_token_ids": ids[0].tolist(), "unk_in_text_ids": int((ids == unk).sum()),
             "zh_segmenter": ("spacy_pkuseg pkuseg()" if seg is not None else
                              "none: spacy_pkuseg could not load its model offline (only zh segmentation is affected)")}
    log(f"  text ({GOLDEN_LANGUAGE}): {norm!r} -> {ids.shape[1]} ids ({facts['unk_in_text_ids']} [UNK])")
    return text_tokens, facts


def _analyzer_state(analyzer, before: torch.Tensor, after: torch.Tensor, token: int, messages: list) -> dict:
    """What one AlignmentStreamAnalyzer.step did, read from the object and its logits."""
    eos = analyzer.eos_idx
    big = float(2 ** 15)
    others = torch.cat([after[0, :eos], after[0, eos + 1:]])
    forced = bool(after[0, eos] == big and torch.all(others == -big))
    return {
        "next_token": int(token),
        "cur_text_posn": int(analyzer.alignment[-1].argmax()),
        "text_position": int(analyzer.text_position),
        "started": bool(analyzer.started),
        "complete": bool(analyzer.complete),
        "eos_suppressed": bool(not forced and after[0, eos] == -big and before[0, eos] != -big),
        "eos_forced": forced,
        "warnings": list(messages),
    }


class _Warnings(logging.Handler):
    """Collects the reference analyzer's own log lines (which rule forced EOS)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def analyzer_log():
    lg = logging.getLogger("chatterbox.models.t3.inference.alignment_stream_analyzer")
    h = _Warnings()
    lg.addHandler(h)
    try:
        yield h
    finally:
        lg.removeHandler(h)


class SampledAnalyzer:
    """`on_analyzer` of t3_side.inference_replica: records the sampled run's analyzer."""

    def __init__(self, log_handler: _Warnings):
        self.log = log_handler
        self.rows, self.ins, self.outs, self.states = [], [], [], []
        self.prefill = None
        self.analyzer = None

    def __call__(self, i, analyzer, before, after, last_token):
        self.analyzer = analyzer
        aligned = torch.stack(analyzer.last_aligned_attns).mean(0)
        if i == 0:
            self.prefill = aligned.clone()
        else:
            self.rows.append(aligned[0].clone())
        self.ins.append(before[0])
        self.outs.append(after[0])
        self.states.append(_analyzer_state(analyzer, before, after, last_token, self.log.messages))
        self.log.messages.clear()


def _states_table(states: list) -> dict:
    """Per-step lists (one entry per analyzer step) for goldens.json."""
    return {k: [s[k] for s in states] for k in states[0]}


def _padded(rows: list, width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for k, r in enumerate(rows):
        out[k, : r.shape[-1]] = r
    return out


@torch.inference_mode()
def t3_goldens(ctx: ExportContext, tts, text_tokens: torch.Tensor, config: str) -> dict:
    """The original family's T3 goldens (t3_side.make_goldens: the sampler replica now runs
    the reference analyzer, as T3.inference does for this config) plus the alignment and
    analyzer goldens. Everything with eager attention, which is what the analyzer switches
    the reference to before its first forward."""
    import t3_side

    t3 = tts.t3
    heads = alignment_heads(config)
    with reference_aligned_heads(config), t3_side.eager_attention(t3.tfmr), analyzer_log() as warn:
        sampled = SampledAnalyzer(warn)
        facts = t3_side.make_goldens(ctx, tts, text_tokens, GENERATION, tf_repeat_at=TF_REPEAT_AT,
                                     on_analyzer=sampled)
        facts["alignment"] = teacher_forced_alignment(ctx, tts, text_tokens, heads, warn)
        facts["analyzer_sampled"] = sampled_goldens(ctx, sampled, facts["alignment"])
    facts["alignment_heads"] = heads
    facts["alignment_heads_note"] = (
        "the reference's LLAMA_ALIGNED_HEADS" if config != "tiny" else
        f"LLAMA_ALIGNED_HEADS {TINY_ALIGNED_HEADS} patched into alignment_stream_analyzer (the tiny Llama has 2 "
        "layers x 4 heads; the reference's (12, 15), (13, 11), (9, 2) do not exist there)")
    return facts


def teacher_forced_alignment(ctx: ExportContext, tts, text_tokens: torch.Tensor, heads: list, warn: _Warnings) -> dict:
    """tf_alignment_prefill / tf_alignment_steps (the decoder's `alignment` output under
    teacher forcing) and the reference analyzer replayed over the same calls (analyzer_tf_*)."""
    import t3_side

    t3 = tts.t3
    gen = GENERATION
    tf = torch.from_numpy(ctx.goldens["tf_speech_tokens"])
    n = tf.shape[1]
    x, len_cond = t3_side.teacher_forced_inputs(t3, tts.conds.t3, text_tokens, tf, gen)
    i, j = len_cond, len_cond + text_tokens.shape[1]
    t0 = x.shape[1] - n + 1
    capacity = t0 + n - 1
    analyzer = t3_side.new_alignment_analyzer(t3, len_cond, text_tokens.shape[1])
    backend = t3_side._backend(t3, analyzer)
    warn.messages.clear()
    steps, logits, ins, outs, states = [], [], [], [], []
    prefill = None
    for k, o in t3_side.cached_calls(backend, x, n, output_attentions=True):
        mean = torch.stack([o.attentions[layer][0, head] for layer, head in heads]).mean(0)
        hooked = torch.stack(analyzer.last_aligned_attns).mean(0)
        if not torch.equal(mean, hooked):
            raise RuntimeError("the analyzer's hooked attentions differ from the model's output_attentions")
        if k == 0:
            prefill = mean
        else:
            steps.append(mean[0])
        lg = o.logits[:, -1]
        logits.append(lg)
        c, u = lg[0:1], lg[1:2]
        before = c + torch.as_tensor(gen["cfg_weight"], dtype=c.dtype) * (c - u)
        after = analyzer.step(before.clone(), next_token=int(tf[0, k]))
        ins.append(before[0])
        outs.append(after[0])
        states.append(_analyzer_state(analyzer, before, after, int(tf[0, k]), warn.messages))
        warn.messages.clear()
    err = rel_error(ctx.goldens["tf_logits"], torch.stack(logits, 1).numpy())
    if not err <= 1e-5:
        raise RuntimeError(f"teacher-forced cached calls differ from tf_logits: {err:.3g}")
    ctx.add_golden("tf_alignment_prefill", prefill[j:],
                   f"rows j.. (j = {j}: the speech rows, BOS twice) of the prefill's [T0, T0] map (T0 = {t0}, the "
                   "cached prefill of tf_logits: cond | text | BOS | speech_emb(tf[0])+pos(0)), batch row 0, mean of "
                   "the aligned heads' attention probabilities (eager attention, output_attentions); = t3_decoder's "
                   "`alignment` rows j.. of that prefill, all T0 columns")
    ctx.add_golden("tf_alignment_steps", _padded(steps, capacity),
                   f"row k-1: the call feeding tf[k] alone (k = 1..S-1) on the cache, batch row 0, mean of the aligned "
                   f"heads; columns 0..T0+k-1 (the positions it sees), zeros after, width T0 + S - 1 = {capacity} "
                   "(t3_decoder's `alignment` output of that step at that capacity)")
    ctx.add_golden("analyzer_tf_in", torch.stack(ins),
                   "row k: the logits AlignmentStreamAnalyzer.step got at teacher-forced step k: CFG of tf_logits[:, k] "
                   f"(cond + {gen['cfg_weight']} (cond - uncond)), next_token = tf[k]")
    ctx.add_golden("analyzer_tf_out", torch.stack(outs),
                   "row k: what step returned (EOS -2^15 when suppressed; all -2^15 and EOS +2^15 when forced)")
    ctx.add_golden("analyzer_tf_alignment", analyzer.alignment,
                   "the analyzer's accumulated `alignment` after the last step: rows j.. of the prefill map, then one "
                   "row per step, columns i..j-1 (the text), each row zeroed after column curr_frame_pos + 1 as step does")
    forced = [k for k, s in enumerate(states) if s["eos_forced"]]
    suppressed = [k for k, s in enumerate(states) if s["eos_suppressed"]]
    log(f"  teacher-forced analyzer: EOS forced at steps {forced}, suppressed at {suppressed}, "
        f"text_position {[s['text_position'] for s in states]}")
    if TF_REPEAT_AT not in forced or not suppressed:
        raise RuntimeError(f"teacher-forced analyzer run does not exercise the token-repetition force (step {TF_REPEAT_AT}) "
                           "and the EOS suppression")
    return {"text_slice": [i, j], "prefill_len": t0, "steps_capacity": capacity,
            "analyzer_tf": dict(_states_table(states), started_at=_int(analyzer.started_at),
                                completed_at=_int(analyzer.completed_at))}


def _int(v):
    return None if v is None else int(v)


def sampled_goldens(ctx: ExportContext, rec: SampledAnalyzer, tf_facts: dict) -> dict:
    """analyzer_sampled_*: the sampler replica's analyzer, step by step."""
    i, j = tf_facts["text_slice"]
    t0 = tf_facts["prefill_len"]
    if not np.array_equal(rec.prefill[j:].numpy(), ctx.goldens["tf_alignment_prefill"]):
        raise RuntimeError("the sampled run's prefill alignment differs from tf_alignment_prefill")
    n = len(rec.ins)
    ctx.add_golden("analyzer_sampled_attn_steps", _padded(rec.rows, t0 + n - 1),
                   "row k-1: the aligned heads' mean (batch row 0) the analyzer read at sampler step k >= 1, i.e. after "
                   "feeding t3_sampled_tokens[k-1] at speech position k; zeros after column T0 + k - 1 (the prefill's is "
                   "tf_alignment_prefill: same inputs)")
    ctx.add_golden("analyzer_sampled_in", torch.stack(rec.ins),
                   "row k: the CFG logits AlignmentStreamAnalyzer.step got at sampler step k (next_token: BOS at k = 0, "
                   "then t3_sampled_tokens[k-1])")
    ctx.add_golden("analyzer_sampled_out", torch.stack(rec.outs),
                   "row k: what step returned; the sampler (repetition penalty, temperature, min_p, top_p) continues "
                   "from it (sampler_processed_k)")
    ctx.add_golden("analyzer_sampled_alignment", rec.analyzer.alignment,
                   "the sampled run's analyzer `alignment` after its last step (as analyzer_tf_alignment)")
    states = rec.states
    log(f"  sampled analyzer: {n} steps, EOS forced at {[k for k, s in enumerate(states) if s['eos_forced']]}, "
        f"suppressed at {[k for k, s in enumerate(states) if s['eos_suppressed']]}")
    return dict(_states_table(states), started_at=_int(rec.analyzer.started_at),
                completed_at=_int(rec.analyzer.completed_at))


def write_vocab(out: Path, vocab: dict) -> list[Path]:
    """Writes the vocabulary files of `vocab_sources` into the bundle; returns their paths."""
    paths = []
    for name, data in vocab.items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    return paths


# manifest `frontends` lines that differ from the original family's
FRONTENDS = {
    "text": "engine: mtl_tts.punc_norm, then MTLTokenizer: lowercase, NFKD, per-language steps (zh: Cangjie codes from "
            "Cangjie5_TC.json; ja, he, ko, ru as the reference), [lang] prefix, spaces -> [SPACE], tokenizer.json; "
            "[START] / [STOP] around",
    "sampler": "engine: CFG mixing, AlignmentStreamAnalyzer.step on the CFG logits (t3_decoder's `alignment` output: "
               "EOS suppressed or forced), repetition penalty, temperature, min_p, top_p, seeded draw, stop",
}
