"""Checks a chatterbox-ort bundle (docs/BUNDLE.md), original, turbo or multilingual family.

    python export/verify_bundle.py BUNDLE_DIR [--reproduce]

Checks the manifest against export/manifest.schema.json, every listed file's size
and sha256, loads every component in onnxruntime, compares its real inputs and
outputs with the manifest and rejects randomness-producing ops. --reproduce
re-runs the export with the manifest's config / seed / precision (and the bundle's
own goldens/ref.wav) into a temporary folder and requires identical files; a file
that differs is accepted only when its graph gives identical outputs on fixed inputs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SCHEMA_PATH = HERE / "manifest.schema.json"


# ----------------------------------------------------------------------------- schema


class SchemaError(Exception):
    pass


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(value, schema: dict, root: dict, where: str) -> None:
    """A validator for the JSON Schema subset manifest.schema.json uses
    ($ref, type, const, enum, required, properties, additionalProperties, items,
    minItems, maxItems, contains, minimum, minLength, pattern, allOf, if / then / else)."""
    for sub in schema.get("allOf", []):
        _check(value, sub, root, where)
    if "if" in schema:
        try:
            _check(value, schema["if"], root, where)
            holds = True
        except SchemaError:
            holds = False
        branch = schema.get("then" if holds else "else")
        if branch is not None:
            _check(value, branch, root, where)
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise SchemaError(f"unsupported $ref {ref}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        _check(value, target, root, where)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            raise SchemaError(f"{where}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.60}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{where}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} not one of {schema['enum']}")
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                raise SchemaError(f"{where}: missing required key {k!r}")
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                _check(v, props[k], root, f"{where}.{k}")
            elif "additionalProperties" in schema:
                ap = schema["additionalProperties"]
                if ap is False:
                    raise SchemaError(f"{where}: unexpected key {k!r}")
                if isinstance(ap, dict):
                    _check(v, ap, root, f"{where}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaError(f"{where}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(f"{where}: at most {schema['maxItems']} items")
        if "items" in schema:
            for i, v in enumerate(value):
                _check(v, schema["items"], root, f"{where}[{i}]")
        if "contains" in schema:
            def holds(v):
                try:
                    _check(v, schema["contains"], root, where)
                    return True
                except SchemaError:
                    return False

            if not any(holds(v) for v in value):
                raise SchemaError(f"{where}: no item matches {json.dumps(schema['contains'])}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(f"{where}: string too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(f"{where}: {value!r} does not match {schema['pattern']}")
    if _TYPES["number"](value) and "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(f"{where}: {value} < minimum {schema['minimum']}")


def validate_manifest(manifest: dict) -> None:
    """Validates with `jsonschema` when installed, else with the subset validator above."""
    schema = json.loads(SCHEMA_PATH.read_text())
    try:
        import jsonschema
    except ImportError:
        _check(manifest, schema, schema, "manifest")
        return
    try:
        jsonschema.Draft202012Validator(schema).validate(manifest)
    except jsonschema.ValidationError as e:
        raise SchemaError(f"manifest.{'.'.join(map(str, e.absolute_path))}: {e.message}") from None


# ----------------------------------------------------------------------------- checks


def all_files(manifest: dict) -> list[dict]:
    out = [f for c in manifest["components"].values() for f in c["files"]]
    return out + list(manifest["files"])


def check_files(bundle: Path, manifest: dict) -> list[str]:
    from common import sha256_file

    errors = []
    for f in all_files(manifest):
        p = bundle / f["path"]
        if not p.is_file():
            errors.append(f"{f['path']}: listed in the manifest but missing")
            continue
        if p.stat().st_size != f["bytes"]:
            errors.append(f"{f['path']}: {p.stat().st_size} bytes, manifest says {f['bytes']}")
        elif sha256_file(p) != f["sha256"]:
            errors.append(f"{f['path']}: sha256 differs from the manifest")
    for name, c in manifest["components"].items():
        if c["files"][0]["path"] != f"{name}.onnx":
            errors.append(f"component {name}: files[0] is {c['files'][0]['path']}, expected {name}.onnx")
    return errors


def _dims(vi) -> list:
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(int(d.dim_value) if d.HasField("dim_value") else d.dim_param)
    return out


def check_components(bundle: Path, manifest: dict) -> list[str]:
    import onnx

    from common import _ONNX_DTYPES, RANDOM_OPS, graph_ops, ort_session

    errors = []
    for name, c in manifest["components"].items():
        path = bundle / c["files"][0]["path"]
        if not path.is_file():
            continue
        model = onnx.load(str(path), load_external_data=False)
        bad = sorted(graph_ops(model) & RANDOM_OPS)
        if bad:
            errors.append(f"component {name}: randomness-producing ops {bad}")
        if model.opset_import and all(o.version != c["opset"] for o in model.opset_import if o.domain in ("", "ai.onnx")):
            errors.append(f"component {name}: opset differs from the manifest's {c['opset']}")
        for kind, vis in (("inputs", model.graph.input), ("outputs", model.graph.output)):
            got = [(v.name, _ONNX_DTYPES.get(v.type.tensor_type.elem_type, "?"), _dims(v)) for v in vis]
            want = [(t["name"], t["dtype"], t["shape"]) for t in c[kind]]
            if [g[:2] for g in got] != [w[:2] for w in want]:
                errors.append(f"component {name}: {kind} {[g[:2] for g in got]} != manifest {[w[:2] for w in want]}")
                continue
            for (n, _, gs), (_, _, ws) in zip(got, want):
                if len(gs) != len(ws) or any(isinstance(w, int) and g != w for g, w in zip(gs, ws)):
                    errors.append(f"component {name}: {n} shape {gs} != manifest {ws}")
        try:
            ort_session(path)
        except Exception as e:  # noqa: BLE001
            errors.append(f"component {name}: onnxruntime cannot load it ({type(e).__name__}: {str(e)[:200]})")
        else:
            print(f"  ok {name}: {sum(f['bytes'] for f in c['files']) / 1e6:.2f} MB, {c['precision']}, "
                  f"self-check {c['self_check']['max_rel_error']:.3g}")
    return errors


# ----------------------------------------------------------------------------- goldens

GOLDEN_TOLERANCE = 1e-3


def t3_golden_tolerance(manifest: dict) -> float:
    """Tolerance of the teacher-forced logits: GOLDEN_TOLERANCE for an fp32 (or fp16-weight)
    `t3_decoder`; for an int8 / int4 or fp16-compute one (export/quantize_bundle.py) that plus
    twice the error against the fp32 graph recorded in its self_check (other inputs)."""
    c = manifest["components"]["t3_decoder"]
    if c["precision"] in ("int8", "int4") or "fp16" in c:
        return GOLDEN_TOLERANCE + 2 * c["self_check"]["max_rel_error"]
    return GOLDEN_TOLERANCE


def fp16_golden_tolerance(manifest: dict, name: str) -> float:
    """GOLDEN_TOLERANCE, plus for an fp16 `name` twice the error recorded in its self_check
    (against the fp32 graph, quantize_bundle.py --precision fp16, or against torch,
    export_bundle.py --precision fp16)."""
    c = manifest["components"][name]
    if c["precision"] == "fp16":
        return GOLDEN_TOLERANCE + 2 * c["self_check"]["max_rel_error"]
    return GOLDEN_TOLERANCE


FLOW_GOLDEN_TOLERANCE = 1e-2


def flow_golden_tolerance(manifest: dict) -> float:
    """Tolerance of the Euler loop's mel: FLOW_GOLDEN_TOLERANCE (ten chained fp32 or fp16
    estimator calls); for an int8 / int4 `flow_estimator` (export/quantize_bundle.py)
    that plus twice the mel error against the fp32 graph recorded in its self_check
    (other inputs)."""
    c = manifest["components"]["flow_estimator"]
    if c["precision"] in ("int8", "int4") or "fp16" in c:
        return FLOW_GOLDEN_TOLERANCE + 2 * c["self_check"]["mel_rel_error"]
    return FLOW_GOLDEN_TOLERANCE


def cfg_mix(logits2, cfg_weight):
    """CFG of docs/BUNDLE.md: cond + w (cond - uncond), float32."""
    import numpy as np

    c, u = logits2[0].astype(np.float32), logits2[1].astype(np.float32)
    return c + np.float32(cfg_weight) * (c - u)


def sampler_reference(logits2, history, cfg_weight, penalty, temperature, min_p, top_p, mixed=None):
    """The host-side sampler of docs/BUNDLE.md in numpy (CFG, repetition penalty,
    temperature, min_p, top_p), used to check that description against the goldens.
    `mixed`: the row to continue from instead of the CFG of `logits2` (the multilingual
    family: the alignment analyzer's output)."""
    import numpy as np

    x = cfg_mix(logits2, cfg_weight) if mixed is None else mixed.astype(np.float32).copy()
    ids = np.unique(history)
    v = x[ids]
    x[ids] = np.where(v < 0, v * np.float32(penalty), v / np.float32(penalty))
    x = x / np.float32(temperature)
    p = np.exp(x - x.max())
    p /= p.sum()
    x = np.where(p < min_p * p.max(), -np.inf, x).astype(np.float32)
    if top_p < 1.0:
        order = np.argsort(x)  # ascending, as HF's TopPLogitsWarper
        q = np.exp(x[order] - x.max())
        cum = np.cumsum(q / q.sum())
        drop = cum <= 1 - top_p
        drop[-1] = False
        x[order[drop]] = -np.inf
    return x[None]


def turbo_sampler_reference(logits, history, temperature, top_k, top_p, penalty):
    """The Turbo sampler of docs/BUNDLE.md in numpy, in inference_turbo's order:
    temperature, top_k, top_p, repetition penalty (HF processors' rules)."""
    import numpy as np

    x = logits.reshape(-1).astype(np.float32) / np.float32(temperature)
    k = min(int(top_k), x.size)
    if k > 0:
        kth = np.sort(x)[-k]
        x = np.where(x < kth, np.float32(-np.inf), x).astype(np.float32)
    if top_p < 1.0:
        order = np.argsort(x, kind="stable")  # ascending, as HF's TopPLogitsWarper
        q = np.exp((x[order] - x.max()).astype(np.float64))
        cum = np.cumsum(q / q.sum())
        drop = cum <= 1 - top_p
        drop[-1] = False
        x[order[drop]] = -np.inf
    ids = np.unique(history)
    v = x[ids]
    x[ids] = np.where(v < 0, v * np.float32(penalty), v / np.float32(penalty))
    return x[None]


def check_tokenizer(bundle: Path, facts: dict) -> list[str]:
    """tokenizer.json (HF `tokenizers`, as the engine loads it) against the golden ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    cases = [{"text": facts["normalized_text"], "ids": facts["text_token_ids"]}] + list(facts.get("tokenizer_cases", []))
    cases += [{"text": c["normalized"], "ids": c["ids"]} for c in facts.get("punc_norm_cases", [])]
    bad = [c["text"] for c in cases if tok.encode(c["text"]).ids != c["ids"]]
    print(f"  golden tokenizer: {len(cases) - len(bad)} of {len(cases)} texts give the golden ids")
    return [f"tokenizer.json: {t!r} does not give the golden ids" for t in bad]


def decode_chain(run, manifest, prefill, steps, alignments=None):
    """t3_decoder as the engine runs it: `prefill` [B, S, D], then `steps[:, j]` for
    j >= 1, on one capacity-sized cache (past_len grows; the present_* outputs are fed
    back as past_*). Returns the last-position logits of each call, [B, steps, V]. A list
    given as `alignments` receives each call's `alignment` output (multilingual)."""
    import numpy as np

    dec = manifest["components"]["t3_decoder"]
    names = [o["name"] for o in dec["outputs"]]
    batch = prefill.shape[0]
    n_steps = steps.shape[1]
    capacity = prefill.shape[1] + n_steps - 1
    n_layers = sum(1 for i in dec["inputs"] if i["name"].startswith("past_key_"))
    kv = {i["name"]: np.zeros([batch] + [capacity if d == "capacity" else d for d in i["shape"][1:]], np.float32)
          for i in dec["inputs"] if i["name"].startswith(("past_key_", "past_value_"))}
    past, logits = 0, []
    for j in range(n_steps):
        x = prefill if j == 0 else steps[:, j:j + 1]
        out = run("t3_decoder", inputs_embeds=x, past_len=np.array([past], np.int64), **kv)
        past += x.shape[1]
        logits.append(out[0][:, -1])
        if alignments is not None:
            alignments.append(out[names.index("alignment")])
        kv = {f"past_{kind}_{i}": out[1 + 2 * i + (kind == "value")] for i in range(n_layers) for kind in ("key", "value")}
    return np.stack(logits, 1)


def check_goldens_turbo(bundle: Path, manifest: dict, g: dict, facts: dict, run, compare, tokens_match) -> list[str]:
    """The Turbo chain (docs/BUNDLE.md, "The turbo family") on the goldens: loudness,
    conditioning, tokenizer, T3 prefill + cached decode, sampler rules, meanflow Euler,
    HiFT, Perth."""
    import numpy as np

    from common import rel_error

    errors = check_tokenizer(bundle, facts)
    gen = manifest["generation"]
    cfg = manifest["config"]
    f32 = np.float32
    if not np.array_equal(g["text_tokens"][0], np.asarray(facts["text_token_ids"])):
        errors.append("goldens.json text_token_ids differ from the text_tokens tensor")
    # loudness normalisation: ref_24k = ref_24k_raw * 10^((target - L) / 20)
    lufs = facts["voice"]["loudness_lufs"]
    gain = 10.0 ** ((cfg["voice"]["loudness_lufs"] - lufs) / 20.0)
    compare("ref_24k_raw x loudness gain vs ref_24k", g["ref_24k"], g["ref_24k_raw"] * gain, tol=1e-6)
    compare("loudness_lufs tensor vs goldens.json", np.array([lufs]), g["loudness_lufs"], tol=1e-6)
    # conditioning
    compare("voice_encoder(ve_trimmed) vs ve_embedding", g["ve_embedding"], run("voice_encoder", wav=g["ve_trimmed"][None])[0])
    n16 = int(cfg["t3"]["prompt_seconds"] * 16000)
    plen = int(cfg["t3"]["prompt_max_tokens"])
    tokens_match("s3_tokenizer(ref_16k[:15 s]) vs t3_prompt_tokens",
                 g["t3_prompt_tokens"], run("s3_tokenizer", wav=g["ref_16k"][None, :n16])[0][:, :plen])
    s3t = run("s3_tokenizer", wav=g["s3gen_ref_16k"][None])[0]
    n_tok = g["s3gen_prompt_tokens"].shape[1]
    tokens_match("s3_tokenizer(s3gen_ref_16k) vs s3gen_prompt_tokens", g["s3gen_prompt_tokens"], s3t[:, :n_tok])
    compare("campplus(s3gen_ref_16k) vs xvector", g["xvector"], run("campplus", wav=g["s3gen_ref_16k"][None])[0])
    mel = run("s3gen_mel", wav=g["ref_24k"][None, : 10 * 24000])[0]
    compare("s3gen_mel(ref_24k[:10 s]) vs prompt_mel", g["prompt_mel"], mel[:, : g["prompt_mel"].shape[1]])

    # T3 chain: prefill cond | text | speech_emb(6561), then one token at a time
    pe = run("t3_speech_embed", tokens=g["t3_prompt_tokens"])[0]
    cond = run("t3_cond", speaker_emb=g["ve_embedding"], prompt_embeds=pe)[0]
    compare("t3_cond", g["t3_cond"], cond)
    te = run("t3_text_embed", tokens=g["text_tokens"])[0]
    tf = g["tf_speech_tokens"]
    sp = run("t3_speech_embed", tokens=tf)[0]
    x = np.concatenate([cond, te, sp[:, :1]], 1)
    compare("t3 prefill + cached decode vs tf_logits", g["tf_logits"], decode_chain(run, manifest, x, sp),
            tol=t3_golden_tolerance(manifest))

    # sampler rules
    for k in facts.get("t3", {}).get("sampler_steps", []):
        got = turbo_sampler_reference(g[f"sampler_logits_{k}"], g[f"sampler_history_{k}"], gen["temperature"],
                                      gen["top_k"], gen["top_p"], gen["repetition_penalty"])
        ref = g[f"sampler_processed_{k}"]
        same_mask = np.array_equal(np.isinf(ref), np.isinf(got))
        fin = np.isfinite(ref)
        e = rel_error(ref[fin], got[fin]) if same_mask else float("inf")
        print(f"  golden sampler step {k}: kept set {'identical' if same_mask else 'DIFFERS'} "
              f"({int(fin.sum())} kept), rel error {e:.3g}")
        if not (same_mask and e <= 1e-6):
            errors.append(f"golden sampler step {k}: the BUNDLE.md turbo sampler rules do not reproduce sampler_processed_{k}")

    # S3Gen chain: meanflow Euler (linear schedule, no CFG, batch 1)
    toks = np.concatenate([g["s3gen_prompt_tokens"], g["flow_tokens"]], 1)
    sil = cfg["speech"]["silence_token"]
    if not np.all(g["flow_tokens"][0, -cfg["speech"]["silence_tokens"]:] == sil):
        errors.append("flow_tokens do not end with the silence tokens")
    mu, spks = run("flow_encoder", tokens=toks, speaker_emb=g["xvector"])
    compare("flow_encoder vs flow_mu", g["flow_mu"], mu, tol=fp16_golden_tolerance(manifest, "flow_encoder"))
    frames = mu.shape[2]
    n_prompt = g["prompt_mel"].shape[1]
    condm = np.zeros((1, 80, frames), f32)
    condm[:, :, :n_prompt] = g["prompt_mel"].transpose(0, 2, 1)
    steps = int(gen["flow_steps"])
    t_span = np.linspace(0, 1, steps + 1, dtype=f32)
    xcur = g["flow_noise"].copy()
    mask = np.ones((1, 1, frames), f32)
    for i in range(steps):
        t, r = t_span[i:i + 1], t_span[i + 1:i + 2]
        v = run("flow_estimator", x=xcur, mask=mask, mu=mu, t=t, spks=spks, cond=condm, r=r)[0]
        xcur = xcur + (r - t) * v
    compare("meanflow Euler loop (flow_estimator) vs flow_mel", g["flow_mel"], xcur[:, :, n_prompt:],
            tol=flow_golden_tolerance(manifest))
    wav = run("hift", mel=g["flow_mel"], phase_init=g["hift_phase_init"], sine_noise=g["hift_sine_noise"])[0]
    compare("hift(flow_mel) vs hift_wav", g["hift_wav"], wav, tol=fp16_golden_tolerance(manifest, "hift"))
    compare("perth(wm_input_32k) vs wm_output_32k", g["wm_output_32k"], run("perth", wav=g["wm_input_32k"])[0])
    return errors


class AnalyzerReference:
    """AlignmentStreamAnalyzer.step of chatterbox-tts 0.1.7 as docs/BUNDLE.md describes it
    (the multilingual family), in numpy: checks that description against the goldens.
    `step(rows, logits, token)`: `rows` the aligned heads' mean the call produced (for the
    first step the prefill's rows j.. (j = end of the text), after that the step's one row),
    `logits` the CFG row, `token` the last generated token (BOS first)."""

    def __init__(self, text_slice, eos):
        import numpy as np

        self.i, self.j = text_slice
        self.eos = eos
        self.alignment = np.zeros((0, self.j - self.i), np.float32)
        self.frame = 0
        self.text_position = 0
        self.started, self.started_at = False, None
        self.complete, self.completed_at = False, None
        self.tokens = []

    def step(self, rows, logits, token):
        import numpy as np

        chunk = np.array(rows[:, self.i:self.j], np.float32)
        chunk[:, self.frame + 1:] = 0  # nothing after the frame count (a crude monotonic mask)
        self.alignment = a = np.concatenate([self.alignment, chunk], 0)
        t, s = a.shape
        cur = int(np.argmax(chunk[-1]))
        if -4 < cur - self.text_position < 7:  # else a discontinuity: the position stays
            self.text_position = cur
        false_start = (not self.started) and (a[-2:, -2:].max() > 0.1 or a[:, :4].max() < 0.5)
        self.started = not false_start
        if self.started and self.started_at is None:
            self.started_at = t
        self.complete = self.complete or self.text_position >= s - 3
        if self.complete and self.completed_at is None:
            self.completed_at = t
        long_tail = self.complete and a[self.completed_at:, -3:].sum(0).max() >= 5
        repetition = self.complete and a[self.completed_at:, :-5].max(1).sum() > 5
        self.tokens = (self.tokens + [int(token)])[-8:]
        token_repetition = len(self.tokens) >= 3 and self.tokens[-1] == self.tokens[-2]
        out = np.array(logits, np.float32).copy()
        if cur < s - 3 and s > 5:
            out[..., self.eos] = -2.0 ** 15
        forced = bool(long_tail or repetition or token_repetition)
        if forced:
            out[...] = -2.0 ** 15
            out[..., self.eos] = 2.0 ** 15
        self.frame += 1
        return out, {"cur_text_posn": cur, "text_position": int(self.text_position), "started": bool(self.started),
                     "complete": bool(self.complete), "eos_forced": forced}


def check_goldens_multilingual(bundle: Path, manifest: dict, g: dict, facts: dict, alignments: list, compare) -> list[str]:
    """The multilingual additions: tokenizer.json on the golden text, t3_decoder's
    `alignment` (from the T3 chain just run) against tf_alignment_*, and the analyzer rules
    of docs/BUNDLE.md against the reference analyzer's runs (teacher-forced and sampled),
    first on the golden alignment rows, then on the bundle's own decoder output."""
    import numpy as np
    from tokenizers import Tokenizer

    errors = []
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = tok.encode(facts["tokenizer_input"]).ids
    print(f"  golden tokenizer: {facts['tokenizer_input']!r} -> {'the golden ids' if ids == facts['text_token_ids'] else 'OTHER ids'}")
    if ids != facts["text_token_ids"] or g["text_tokens"][0, 1:-1].tolist() != ids:
        errors.append("tokenizer.json does not give the golden text ids")
    cj = manifest["config"]["text"]["cangjie"]
    if cj not in {f["path"] for f in manifest["files"]}:
        errors.append(f"config.text.cangjie {cj} is not among the manifest's files")
    al = facts["t3"]["alignment"]
    i, j = al["text_slice"]
    t0 = al["prefill_len"]
    if any(np.any(a[:, t0 + k:] != 0) for k, a in enumerate(alignments)):
        errors.append("t3_decoder alignment is not 0 after the positions a call sees")
    tol = t3_golden_tolerance(manifest)
    compare("t3_decoder alignment (prefill rows j..) vs tf_alignment_prefill", g["tf_alignment_prefill"],
            alignments[0][j:, :t0], tol=tol)
    compare("t3_decoder alignment (steps) vs tf_alignment_steps", g["tf_alignment_steps"],
            np.concatenate([a for a in alignments[1:]], 0), tol=tol)
    gen = manifest["generation"]
    eos = manifest["config"]["speech"]["stop_token"]

    def replay(what, rows, ins, outs, tokens, states, required=True):
        ref = AnalyzerReference((i, j), eos)
        bad = []
        for k, (r, x, tk) in enumerate(zip(rows, ins, tokens)):
            y, st = ref.step(r, x, tk)
            if outs is not None and not np.array_equal(y, outs[k]):
                bad.append(f"step {k}: logits")
            for key, v in st.items():
                if states[key][k] != v:
                    bad.append(f"step {k}: {key} {v} != {states[key][k]}")
        print(f"  golden analyzer {what}: {len(ins)} steps, {'as the reference' if not bad else bad[:3]}")
        if bad and required:
            errors.append(f"golden analyzer {what}: the BUNDLE.md rules differ from the reference ({bad[0]})")

    tf = g["tf_speech_tokens"][0]
    n = tf.shape[0]
    steps = g["tf_alignment_steps"]
    tf_rows = [g["tf_alignment_prefill"]] + [steps[k - 1:k, :t0 + k] for k in range(1, n)]
    tf_in = [cfg_mix(g["tf_logits"][:, k], gen["cfg_weight"]) for k in range(n)]
    compare("CFG(tf_logits) vs analyzer_tf_in", g["analyzer_tf_in"], np.stack(tf_in), tol=1e-5)
    replay("teacher-forced (golden rows)", tf_rows, g["analyzer_tf_in"], g["analyzer_tf_out"], tf, facts["t3"]["alignment"]["analyzer_tf"])
    own_rows = [alignments[0][j:, :t0]] + [a[:, :t0 + k] for k, a in enumerate(alignments[1:], 1)]
    # a quantized decoder's rows may move an argmax: informative only there
    quantized = manifest["components"]["t3_decoder"]["precision"] in ("int8", "int4")
    replay("teacher-forced (this bundle's decoder)", own_rows, g["analyzer_tf_in"], None, tf,
           facts["t3"]["alignment"]["analyzer_tf"], required=not quantized)

    sampled = facts["t3"]["analyzer_sampled"]
    m = g["analyzer_sampled_in"].shape[0]
    st = g["analyzer_sampled_attn_steps"]
    rows = [g["tf_alignment_prefill"]] + [st[k - 1:k, :t0 + k] for k in range(1, m)]
    tokens = [manifest["config"]["speech"]["start_token"]] + g["t3_sampled_tokens"].tolist()
    replay("sampled", rows, g["analyzer_sampled_in"], g["analyzer_sampled_out"], tokens[:m], sampled)
    for k in facts["t3"].get("sampler_steps", []):
        compare(f"CFG(sampler_logits_{k}) vs analyzer_sampled_in[{k}]", g["analyzer_sampled_in"][k],
                cfg_mix(g[f"sampler_logits_{k}"], gen["cfg_weight"]), tol=1e-6)
    return errors


def check_goldens(bundle: Path, manifest: dict) -> list[str]:
    """Runs the bundle's graphs on the golden inputs and compares with the reference
    outputs in goldens/goldens.safetensors (T3 chain, sampler rules, S3Gen chain)."""
    import numpy as np
    from safetensors.numpy import load_file

    from common import ort_session, rel_error

    gpath = bundle / "goldens" / "goldens.safetensors"
    if not gpath.is_file():
        return []
    g = load_file(str(gpath))
    facts = json.loads((bundle / "goldens" / "goldens.json").read_text())
    gen = manifest["generation"]
    sess = {}

    def run(name, **feed):
        if name not in sess:
            sess[name] = ort_session(bundle / f"{name}.onnx")
        # an fp16 decoder's KV cache is float16; its outputs are read as float32
        half = {i.name for i in sess[name].get_inputs() if i.type == "tensor(float16)"}
        feed = {k: v.astype(np.float16) if k in half else v for k, v in feed.items()}
        return [o.astype(np.float32) if o.dtype == np.float16 else o for o in sess[name].run(None, feed)]

    errors = []

    def compare(what, ref, got, tol=GOLDEN_TOLERANCE):
        e = rel_error(ref, got)
        print(f"  golden {what}: rel error {e:.3g}")
        if not e <= tol:
            errors.append(f"golden {what}: rel error {e:.3g} > {tol}")

    def tokens_match(what, ref, got):
        ref, got = np.asarray(ref).reshape(-1), np.asarray(got).reshape(-1)
        n = min(len(ref), len(got))
        bad = int((ref[:n] != got[:n]).sum()) + abs(len(ref) - len(got))
        print(f"  golden {what}: {bad} of {len(ref)} tokens differ")
        if bad > 0.01 * len(ref):
            errors.append(f"golden {what}: {bad} of {len(ref)} tokens differ")

    if manifest["model"].get("family", "original") == "turbo":
        turbo_errors = check_goldens_turbo(bundle, manifest, g, facts, run, compare, tokens_match)
        return errors + turbo_errors  # compare() appends to `errors` too

    f32 = np.float32
    # conditioning
    compare("voice_encoder(ve_trimmed) vs ve_embedding", g["ve_embedding"], run("voice_encoder", wav=g["ve_trimmed"][None])[0])
    n16 = 6 * 16000
    tokens_match("s3_tokenizer(ref_16k[:6 s]) vs t3_prompt_tokens",
                 g["t3_prompt_tokens"], run("s3_tokenizer", wav=g["ref_16k"][None, :n16])[0][:, :150])
    s3t = run("s3_tokenizer", wav=g["s3gen_ref_16k"][None])[0]
    n_tok = g["s3gen_prompt_tokens"].shape[1]
    tokens_match("s3_tokenizer(s3gen_ref_16k) vs s3gen_prompt_tokens", g["s3gen_prompt_tokens"], s3t[:, :n_tok])
    compare("campplus(s3gen_ref_16k) vs xvector", g["xvector"], run("campplus", wav=g["s3gen_ref_16k"][None])[0])
    mel = run("s3gen_mel", wav=g["ref_24k"][None, : 10 * 24000])[0]
    compare("s3gen_mel(ref_24k[:10 s]) vs prompt_mel", g["prompt_mel"], mel[:, : g["prompt_mel"].shape[1]])

    # T3 chain
    p = g["t3_prompt_tokens"]
    pe = run("t3_speech_embed", tokens=p, positions=np.arange(p.shape[1], dtype=np.int64)[None])[0]
    cond = run("t3_cond", speaker_emb=g["ve_embedding"], prompt_embeds=pe,
               exaggeration=np.full((1, 1, 1), gen["exaggeration"], f32))[0]
    compare("t3_cond", g["t3_cond"], cond)
    text = np.concatenate([g["text_tokens"]] * 2)
    te, tp = run("t3_text_embed", tokens=text)
    te[1] = 0
    tf = g["tf_speech_tokens"]
    s = tf.shape[1]
    bos = run("t3_speech_embed", tokens=np.full((2, 1), 6561, np.int64), positions=np.zeros((2, 1), np.int64))[0]
    sp = run("t3_speech_embed", tokens=np.concatenate([tf] * 2), positions=np.tile(np.arange(s, dtype=np.int64), (2, 1)))[0]
    x = np.concatenate([np.concatenate([cond] * 2), te + tp, bos, sp[:, :1]], 1)
    mtl = manifest["model"].get("family", "original") == "multilingual"
    alignments = [] if mtl else None
    compare("t3 prefill + cached decode vs tf_logits", g["tf_logits"], decode_chain(run, manifest, x, sp, alignments),
            tol=t3_golden_tolerance(manifest))
    if mtl:
        errors += check_goldens_multilingual(bundle, manifest, g, facts, alignments, compare)

    # sampler rules (multilingual: continuing from the analyzer's output)
    for k in facts.get("t3", {}).get("sampler_steps", []):
        got = sampler_reference(g[f"sampler_logits_{k}"], g[f"sampler_history_{k}"], gen["cfg_weight"],
                                gen["repetition_penalty"], gen["temperature"], gen["min_p"], gen["top_p"],
                                mixed=g["analyzer_sampled_out"][k] if mtl else None)
        ref = g[f"sampler_processed_{k}"]
        same_mask = np.array_equal(np.isinf(ref), np.isinf(got))
        fin = np.isfinite(ref)
        e = rel_error(ref[fin], got[fin]) if same_mask else float("inf")
        print(f"  golden sampler step {k}: kept set {'identical' if same_mask else 'DIFFERS'}, rel error {e:.3g}")
        if not (same_mask and e <= 1e-6):
            errors.append(f"golden sampler step {k}: the BUNDLE.md sampler rules do not reproduce sampler_processed_{k}")

    # S3Gen chain
    if "flow_tokens" in g:
        toks = np.concatenate([g["s3gen_prompt_tokens"], g["flow_tokens"]], 1)
        mu, spks = run("flow_encoder", tokens=toks, speaker_emb=g["xvector"])
        compare("flow_encoder vs flow_mu", g["flow_mu"], mu, tol=fp16_golden_tolerance(manifest, "flow_encoder"))
        steps = int(gen["flow_steps"])
        rate = f32(gen["flow_cfg_rate"])
        frames = mu.shape[2]
        n_prompt = 2 * g["s3gen_prompt_tokens"].shape[1]
        condm = np.zeros((1, 80, frames), f32)
        condm[:, :, :n_prompt] = g["prompt_mel"].transpose(0, 2, 1)
        t_span = (1 - np.cos(np.linspace(0, 1, steps + 1, dtype=np.float64) * 0.5 * np.pi)).astype(f32)
        xcur = g["flow_noise"].copy()
        mask = np.ones((2, 1, frames), f32)
        for i in range(steps):
            t, dt = t_span[i], t_span[i + 1] - t_span[i]
            v = run("flow_estimator", x=np.concatenate([xcur] * 2), mask=mask, mu=np.concatenate([mu, 0 * mu]),
                    t=np.full((2,), t, f32), spks=np.concatenate([spks, 0 * spks]),
                    cond=np.concatenate([condm, 0 * condm]))[0]
            xcur = xcur + dt * ((1 + rate) * v[:1] - rate * v[1:])
        compare("Euler loop (flow_estimator) vs flow_mel", g["flow_mel"], xcur[:, :, n_prompt:],
                tol=flow_golden_tolerance(manifest))
        wav = run("hift", mel=g["flow_mel"], phase_init=g["hift_phase_init"], sine_noise=g["hift_sine_noise"])[0]
        compare("hift(flow_mel) vs hift_wav", g["hift_wav"], wav, tol=fp16_golden_tolerance(manifest, "hift"))
        compare("perth(wm_input_32k) vs wm_output_32k", g["wm_output_32k"], run("perth", wav=g["wm_input_32k"])[0])
    return errors


# ----------------------------------------------------------------------------- reproduce

_FIXED_DIMS = {"batch": 2, "seq": 3, "past": 4, "total": 7, "text_len": 6, "speech_len": 5, "prompt_len": 8,
               "cond_len": 34, "samples": 19200, "frames": 40, "tokens": 20}


def _fixed_inputs(sess, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else _FIXED_DIMS.get(d, 4) for d in i.shape]
        if "int64" in i.type:
            feed[i.name] = rng.integers(0, 100, shape).astype(np.int64)
        else:
            feed[i.name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return feed


def same_outputs(a: Path, b: Path) -> tuple[bool, str]:
    import numpy as np

    from common import ort_session

    sa, sb = ort_session(a), ort_session(b)
    feed = _fixed_inputs(sa)
    try:
        oa, ob = sa.run(None, feed), sb.run(None, feed)
    except Exception as e:  # noqa: BLE001
        return False, f"could not run on fixed inputs ({type(e).__name__})"
    for x, y in zip(oa, ob):
        if x.shape != y.shape or not np.array_equal(x, y):
            return False, "outputs differ on fixed inputs"
    return True, "same outputs on fixed inputs (file bytes differ)"


def reproduce(bundle: Path, manifest: dict) -> list[str]:
    import export_bundle

    quantized = [n for n, c in manifest["components"].items() if c["precision"] in ("int8", "int4") or "fp16" in c]
    if quantized:
        return [f"--reproduce: {', '.join(quantized)} converted by export/quantize_bundle.py; reproduce the fp32 "
                "bundle it was made from (quantization.fp32_sha256) and quantize that again"]
    m = manifest["model"]
    argv = ["--config", m["config"], "--out", None]
    if m.get("family", "original") != "original":
        argv = ["--family", m["family"]] + argv
    if m["origin"]["kind"] == "checkpoint":
        argv += ["--checkpoint", m["origin"]["path"]]
    else:
        argv += ["--seed", str(m["origin"]["seed"])]
    if any(c["precision"] == "fp16" for c in manifest["components"].values()):
        argv += ["--precision", "fp16"]
    ref = bundle / "goldens" / "ref.wav"
    if ref.is_file():
        argv += ["--ref-wav", str(ref)]
        if m["config"] != "tiny":
            argv += ["--goldens"]
    errors = []
    with tempfile.TemporaryDirectory(prefix="cbx-reproduce-") as tmp:
        argv[argv.index("--out") + 1] = tmp
        print(f"re-exporting: export_bundle.py {' '.join(argv)}")
        again = export_bundle.run(export_bundle.parse_args(argv))
        tmp = Path(tmp)
        want = {f["path"]: f for f in all_files(manifest)}
        got = {f["path"]: f for f in all_files(again)}
        if set(want) != set(got):
            errors.append(f"file lists differ: only in bundle {sorted(set(want) - set(got))}, "
                          f"only in re-export {sorted(set(got) - set(want))}")
        comp_of = {c["files"][0]["path"]: c["files"][0]["path"] for c in manifest["components"].values()}
        for path in sorted(set(want) & set(got)):
            if want[path]["sha256"] == got[path]["sha256"]:
                print(f"  identical {path}")
                continue
            onnx_path = path[: -len(".data")] if path.endswith(".onnx.data") else path
            if onnx_path in comp_of:
                ok, why = same_outputs(bundle / onnx_path, tmp / onnx_path)
                (print if ok else errors.append)(f"  {path}: {why}" if ok else f"{path}: {why}")
            else:
                errors.append(f"{path}: differs from the re-export")
        gold = Path("goldens") / "goldens.safetensors"
        if (bundle / gold).is_file():
            from common import sha256_file

            if not (tmp / gold).is_file() or sha256_file(bundle / gold) != sha256_file(tmp / gold):
                errors.append(f"{gold}: differs from the re-export")
            else:
                print(f"  identical {gold}")
    return errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Verify a chatterbox-ort bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("--reproduce", action="store_true", help="re-run the export and compare")
    args = p.parse_args(argv)
    mpath = args.bundle / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: {mpath}: {e}", file=sys.stderr)
        return 2
    errors = []
    try:
        validate_manifest(manifest)
        print("manifest: valid against export/manifest.schema.json")
    except SchemaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    errors += check_files(args.bundle, manifest)
    errors += check_components(args.bundle, manifest)
    if not errors:
        errors += check_goldens(args.bundle, manifest)
    if not errors and args.reproduce:
        errors += reproduce(args.bundle, manifest)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print("bundle OK" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
