"""Quantized `t3_decoder` and `flow_estimator`, and fp16-compute graphs, for a chatterbox-ort
bundle (docs/BUNDLE.md).

    python export/quantize_bundle.py --bundle IN --out OUT --precision int8|int4|fp16
        [--components t3_decoder,flow_estimator=int8] [--flow-method nbits|dynamic]
        [--block-size 32] [--accuracy-level 4] [--keep-fp32 head,positions] [--tokens 100]

`fp16` (`t3_decoder`, `flow_encoder`, `flow_estimator`, `hift`; all four by default): the graph
computes in float16 with fp32 islands (fp16_graph.py), the decoder's KV cache is float16, the
other inputs and outputs stay float32; checked against IN's fp32 graph per stage (`t3_error`,
`flow_error`, `encoder_error`, `hift_error`). export/README.md, "fp16".

Writes OUT, a complete bundle: every file of IN hard-linked (copied where a link is
impossible) except the quantized components (`--components`, default `t3_decoder`; each
NAME or NAME=PRECISION, `--precision` for those without one).

`t3_decoder`: weights quantized block-wise for ONNX Runtime's contrib ops: each MatMul
weight becomes `com.microsoft::MatMulNBits`, each embedding table read by a Gather
(Turbo's learned positions) `GatherBlockQuantized`; round to nearest, asymmetric, one fp32
scale and one zero point per block of `block_size` consecutive values along K (the
table's width for a Gather). GPT-2's Conv1D projections (Turbo), exported as `Gemm`, are
first rewritten to `MatMul` + `Add` so they quantize too. Norms, biases and attention
stay fp32, and so does the arithmetic unless `accuracy_level` 4 (the default) lets the
CPU kernel quantize the activations to int8 per block. Checked against IN's fp32
decoder under teacher forcing (`t3_error`; benches/t3_quant_error.py runs the same code).

`flow_estimator`: every MatMul with a constant weight (the transformer blocks'
projections; convolutions, the time-embedding Gemms and attention stay fp32) quantized
with `--flow-method dynamic` (the default; int8 only) by ONNX Runtime's dynamic
quantization: int8 weights, one scale per output column (`--flow-weight-scale tensor`:
one per tensor), activations quantized to uint8 per tensor at run time
(`MatMulInteger`, fused to `DynamicQuantizeMatMul` by the CPU provider); or with `nbits`
by the decoder's MatMulNBits rewrite (half the error, but no faster than fp32 at the
flow's ~1400-row products on the CPU measured). Checked against IN's fp32 estimator on the engine's inputs for the
bundle's default voice and `--tokens` random speech tokens (`flow_error`;
benches/flow_quant_error.py runs the same code): the velocity of one call per Euler
step, the mel after the whole loop, HiFT's wav and its log-mel.

OUT's manifest records each component's precision, files, quantization settings and
those errors (`self_check`); export/README.md ("Quantized t3_decoder", "Quantized
flow_estimator") has the measurements behind the defaults. Needs onnx, onnxruntime and
numpy only (no torch), so it works on a bundle exported from a real checkpoint as well
as on a random one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from torchless import file_entry, ort_session, sha256_file

# As export/common.py (not imported: it needs torch): a graph whose initializers
# exceed this many bytes keeps them in `<name>.onnx.data` (tensors >= 1 KiB).
EXTERNAL_DATA_THRESHOLD = 8 * 1024 * 1024
PRECISION_BITS = {"int8": 8, "int4": 4}
PRECISIONS = ("int8", "int4", "fp16")
DEFAULT_BLOCK_SIZE = 32
DEFAULT_ACCURACY_LEVEL = 4
KEEP_FP32 = frozenset({"head", "positions"})
# What can be quantized to int8 / int4, in the order they are written.
COMPONENTS = ("t3_decoder", "flow_estimator")
# What can be converted to fp16 compute (fp16_graph.py), and the default set of `--precision fp16`.
FP16_COMPONENTS = ("t3_decoder", "flow_encoder", "flow_estimator", "hift")
FLOW_METHODS = ("nbits", "dynamic")
DEFAULT_FLOW_METHOD = "dynamic"
DEFAULT_TOKENS = 100
# Teacher-forcing inputs: a fixed text of random ids (no tokenizer needed) and speech
# tokens drawn from the fp32 graph's own distribution, both from this seed.
CHECK_SEED = 0
CHECK_TEXT_TOKENS = 40


class QuantizeError(Exception):
    pass


# ----------------------------------------------------------------------------- files


def set_nodes(g, nodes: list) -> None:
    """Replaces the graph's nodes with `nodes` and drops the initializers no node reads."""
    g.ClearField("node")
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    g.ClearField("initializer")
    g.initializer.extend(keep)


def read_safetensors(path: Path) -> dict:
    """The tensors of a safetensors file as numpy arrays (F32 / F64 / I64 / I32)."""
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dtypes[t["dtype"]]).reshape(t["shape"]).copy()
    return out


def load_onnx(path: Path) -> onnx.ModelProto:
    """`path` with its external data read into the initializers. onnx's own loader
    refuses a data file with several hard links, which is how bundles share files
    (this tool's outputs, the benchmark copies); this reads the bytes itself."""
    model = onnx.load(str(path), load_external_data=False)
    files = {}
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info["location"]
        if Path(loc).is_absolute() or ".." in Path(loc).parts:
            raise QuantizeError(f"{path}: external data location {loc!r} outside the graph's folder")
        if loc not in files:
            files[loc] = (path.parent / loc).read_bytes()
        raw = files[loc]
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else len(raw) - offset
        if offset + length > len(raw):
            raise QuantizeError(f"{path}: {t.name} reads past the end of {loc}")
        t.raw_data = raw[offset:offset + length]
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
    return model


def initializer_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for t in model.graph.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        total += n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def save_onnx(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Writes `model` as export/common.py's `save_onnx` does (one file up to
    EXTERNAL_DATA_THRESHOLD of initializers, else `.onnx` + `.onnx.data`); returns the
    files written, `.onnx` first."""
    data = path.with_name(path.name + ".data")
    for p in (path, data):
        if p.exists():
            p.unlink()
    if initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024, convert_attribute=False)
        files = [path, data] if data.exists() else [path]
    else:
        onnx.save_model(model, str(path))
        files = [path]
    for f in files:
        f.chmod(0o644)
    return files


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# ----------------------------------------------------------------------------- graph rewrite


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrites every `Gemm(A, W, C)` with a constant 2-D W and no transA as
    `MatMul(A, W')` (+ `Add(., C')`), W' = alpha * (transB ? W^T : W), C' = beta * C, in
    place. GPT-2's Conv1D exports as such a Gemm; MatMulNBits only replaces MatMul.
    Returns how many were rewritten."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, count = [], 0
    for n in g.node:
        w = inits.get(n.input[1]) if n.op_type == "Gemm" and len(n.input) >= 2 else None
        if w is None or len(w.dims) != 2 or _attr(n, "transA", 0):
            new_nodes.append(n)
            continue
        alpha, beta = float(_attr(n, "alpha", 1.0)), float(_attr(n, "beta", 1.0))
        weight = n.input[1]
        if _attr(n, "transB", 0) or alpha != 1.0:
            arr = numpy_helper.to_array(w)
            arr = (arr.T if _attr(n, "transB", 0) else arr) * np.asarray(alpha, arr.dtype)
            weight = f"{w.name}__matmul"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), weight))
        has_bias = len(n.input) >= 3 and n.input[2] != ""
        bias = n.input[2] if has_bias else ""
        if has_bias and beta != 1.0:
            c = inits.get(bias)
            if c is None:
                raise QuantizeError(f"Gemm {n.name}: beta {beta} on a non-constant C")
            bias = f"{c.name}__beta"
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(c) * np.float32(beta), bias))
        mm_out = f"{n.output[0]}__matmul" if has_bias else n.output[0]
        new_nodes.append(helper.make_node("MatMul", [n.input[0], weight], [mm_out], name=f"{n.name}__matmul"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, bias], [n.output[0]], name=f"{n.name}__bias"))
        count += 1
    set_nodes(g, new_nodes)
    return count


def weight_matmuls(model: onnx.ModelProto) -> list[tuple[str, list[int]]]:
    """(node name, weight shape) of every MatMul whose second input is a 2-D initializer."""
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    return [(n.name, inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]]) == 2]


def block_quantize(w: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W [K, N] fp32 -> (packed [N, k_blocks, block_size * bits / 8] uint8, scales
    [N, k_blocks] fp32, zero points [N, ceil(k_blocks * bits / 8)] uint8): ONNX Runtime's
    own kernels (`quantize_matmul_{4,8}bits`, what its `MatMulNBitsQuantizer` calls), asymmetric."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    k, n = w.shape
    kpack = 8 // bits
    k_blocks = (k + block_size - 1) // block_size
    w = np.ascontiguousarray(np.pad(w.astype(np.float32), ((0, k_blocks * block_size - k), (0, 0))))
    packed = np.zeros((n, k_blocks, block_size // kpack), np.uint8)
    zero_points = np.zeros((n, (k_blocks + kpack - 1) // kpack), np.uint8)
    scales = np.zeros((n, k_blocks), np.float32)
    fn = quantize_matmul_8bits if bits == 8 else quantize_matmul_4bits
    fn(packed, w, scales, zero_points, block_size, n, k, False)
    return packed, scales, zero_points


def table_quantize(w: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An embedding table [R, D] for `GatherBlockQuantized` (blocks along D, round to
    nearest, asymmetric, the range widened to include 0 as ONNX Runtime's MatMulNBits
    quantizer does): (data [R, D] uint8, two codes per byte low nibble first for 4 bits;
    scales [R, D / block] fp32; zero points [R, D / block] uint8, packed likewise)."""
    rows, d = w.shape
    qmax = (1 << bits) - 1
    blocks = w.astype(np.float32).reshape(rows, d // block_size, block_size)
    lo = np.minimum(blocks.min(-1), 0.0)
    hi = np.maximum(blocks.max(-1), 0.0)
    scales = ((hi - lo) / qmax).astype(np.float32)
    scales[scales == 0] = 1.0
    zp = np.clip(np.round(-lo / scales), 0, qmax).astype(np.uint8)
    q = np.clip(np.round(blocks / scales[..., None]) + zp[..., None], 0, qmax).astype(np.uint8).reshape(rows, d)

    def pack(a):
        if bits == 8:
            return a
        a = np.pad(a, ((0, 0), (0, a.shape[1] % 2)))
        return (a[:, 0::2] | (a[:, 1::2] << 4)).astype(np.uint8)

    return pack(q), scales, pack(zp)


def nbits_rewrite(model: onnx.ModelProto, bits: int, block_size: int, accuracy_level: int,
                  keep=lambda node: False, gathers: bool = False) -> tuple[int, list[str]]:
    """Rewrites `model` in place: every MatMul whose weight (input 1) is a 2-D fp32
    initializer becomes `com.microsoft::MatMulNBits`, and with `gathers` every Gather
    from a 2-D fp32 table (input 0) `GatherBlockQuantized` (blocks along the table's
    width, at most `block_size`; a table that does not split into blocks of >= 16 stays
    fp32), both with `bits` and `block_size`. `keep(node)` true leaves that node fp32.
    A weight shared by several nodes is quantized once. Returns the number of parameters
    quantized and the names of the candidate nodes left fp32."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, done, quantized, fp32 = [], {}, 0, []

    def add(wname, arrays):
        names = tuple(f"{wname}_{sfx}" for sfx in (f"Q{bits}", "scales", "zero_points"))
        g.initializer.extend(numpy_helper.from_array(a, nm) for a, nm in zip(arrays, names))
        done[wname] = names
        return int(np.prod(inits[wname].dims))

    for n in g.node:
        const = n.input[1] if n.op_type == "MatMul" else n.input[0] if n.op_type == "Gather" and gathers else None
        w = inits.get(const)
        if w is None or len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT:
            new_nodes.append(n)
            continue
        if keep(n):
            fp32.append(n.name)
            new_nodes.append(n)
            continue
        if n.op_type == "MatMul":
            k, cols = w.dims
            if const not in done:
                quantized += add(const, block_quantize(numpy_helper.to_array(w), bits, block_size))
            attrs = {"K": k, "N": cols, "bits": bits, "block_size": block_size}
            if accuracy_level:
                attrs["accuracy_level"] = accuracy_level
            new_nodes.append(helper.make_node("MatMulNBits", [n.input[0], *done[const]], list(n.output),
                                              name=f"{n.name}_Q{bits}", domain="com.microsoft", **attrs))
            continue
        rows, d = w.dims
        block = min(block_size, d)
        if _attr(n, "axis", 0) != 0 or d % block or block < 16:
            fp32.append(n.name)
            new_nodes.append(n)
            continue
        if const not in done:
            quantized += add(const, table_quantize(numpy_helper.to_array(w), bits, block))
        data, scales, zps = done[const]
        new_nodes.append(helper.make_node("GatherBlockQuantized", [data, n.input[1], scales, zps], list(n.output),
                                          name=f"{n.name}_Q{bits}", domain="com.microsoft", gather_axis=0,
                                          quantize_axis=1, block_size=block, bits=bits))
    set_nodes(g, new_nodes)
    if quantized and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return quantized, fp32


def fp32_parameters(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)


def nbits_info(model: onnx.ModelProto, bits: int, block_size: int, accuracy_level: int, quantized: int,
               total: int, fp32: list) -> dict:
    """The manifest's `quantization` record of a `nbits_rewrite`."""
    return {
        "method": "MatMulNBits / GatherBlockQuantized, round to nearest, asymmetric",
        "bits": bits,
        "block_size": block_size,
        "accuracy_level": accuracy_level,
        "quantized_matmuls": sum(1 for n in model.graph.node if n.op_type == "MatMulNBits"),
        "quantized_gathers": sum(1 for n in model.graph.node if n.op_type == "GatherBlockQuantized"),
        "fp32_weights": sorted(fp32),
        "quantized_fraction": round(quantized / total, 4) if total else 0.0,
    }


def quantize_decoder(model: onnx.ModelProto, bits: int, block_size: int, accuracy_level: int,
                     keep_fp32: set, vocab: int) -> tuple[onnx.ModelProto, dict]:
    """Quantizes the decoder's weights in place (`nbits_rewrite`, tables included, after
    rewriting Gemm to MatMul): every MatMul with a 2-D constant weight and every Gather
    from a 2-D constant table (Turbo's learned positions `wpe`). `keep_fp32` may hold
    "head" (the MatMul with `vocab` outputs, the speech head) and "positions" (the
    tables). Returns the model and the manifest's `quantization` record."""
    gemms = gemm_to_matmul(model)
    heads = [name for name, shape in weight_matmuls(model) if shape[1] == vocab]
    if len(heads) != 1:
        raise QuantizeError(f"t3_decoder: expected one speech-head MatMul with {vocab} outputs, found {heads}")
    total = fp32_parameters(model)

    def keep(n):
        if n.op_type == "MatMul":
            return "head" in keep_fp32 and n.name in heads
        return "positions" in keep_fp32

    quantized, fp32 = nbits_rewrite(model, bits, block_size, accuracy_level, keep, gathers=True)
    info = nbits_info(model, bits, block_size, accuracy_level, quantized, total, fp32)
    info["gemm_rewritten"] = gemms
    return model, info


def quantize_flow_nbits(model: onnx.ModelProto, bits: int, block_size: int,
                        accuracy_level: int) -> tuple[onnx.ModelProto, dict]:
    """`flow_estimator`, weight-only: every MatMul with a 2-D constant weight (the
    transformer blocks' attention and feed-forward projections; the meanflow time mixer)
    becomes MatMulNBits. Convolutions, the time-embedding Gemms, norms and attention
    itself stay fp32."""
    total = fp32_parameters(model)
    quantized, fp32 = nbits_rewrite(model, bits, block_size, accuracy_level)
    return model, nbits_info(model, bits, block_size, accuracy_level, quantized, total, fp32)


def quantize_flow_dynamic(model: onnx.ModelProto, per_channel: bool = True,
                          reduce_range: bool = True) -> tuple[onnx.ModelProto, dict]:
    """`flow_estimator` with dynamic int8 MatMuls (ONNX Runtime's `quantize_dynamic`,
    restricted to the MatMuls with a 2-D constant weight): the weight int8 symmetric
    (per tensor, or per output column with `per_channel`), the activation quantized to
    uint8 per tensor at run time (`DynamicQuantizeLinear` + `MatMulInteger`, which the
    CPU provider fuses into `DynamicQuantizeMatMul`).

    `reduce_range` (default): 7-bit weights (-64..63). On x86 CPUs without VNNI, ONNX
    Runtime's u8 x s8 kernel adds pairs of products in int16 (`vpmaddubsw`), and
    2 x 255 x 127 overflows it: measured on an AVX2-only EPYC, full 8-bit weights gave a tiny
    mel error of 5.2e-2 against 8.5e-3 with VNNI; 7-bit weights cannot saturate."""
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    total = fp32_parameters(model)
    names = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name in
             {m for m, _ in weight_matmuls(model)}]
    if len(set(names)) != len(names) or "" in names:
        raise QuantizeError("flow_estimator: weight MatMuls without unique names; cannot select them")
    inits = {t.name: t for t in model.graph.initializer}
    quantized = sum(int(np.prod(inits[n.input[1]].dims)) for n in model.graph.node if n.name in set(names))
    with tempfile.TemporaryDirectory(prefix="cbx-quant-") as tmp:
        out = Path(tmp) / "q.onnx"
        # quantize_dynamic logs a hint to run its pre-processing (shape inference, graph
        # optimization) first: it changes nothing for named MatMuls with constant weights.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(model, out, op_types_to_quantize=["MatMul"], nodes_to_quantize=names,
                             per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                             use_external_data_format=True)
        finally:
            logging.disable(logging.NOTSET)
        q = load_onnx(out)
    info = {
        "method": "dynamic int8 (onnxruntime.quantization.quantize_dynamic): DynamicQuantizeLinear + MatMulInteger",
        "bits": 8,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "quantized_matmuls": sum(1 for n in q.graph.node if n.op_type == "MatMulInteger"),
        "fp32_weights": [],
        "quantized_fraction": round(quantized / total, 4) if total else 0.0,
    }
    return q, info


# ----------------------------------------------------------------------------- teacher forcing


class KvDecoder:
    """`t3_decoder` as the engine runs it: one capacity-sized cache, `past_len` grows,
    the present_* outputs are fed back as past_*."""

    def __init__(self, path: Path, spec: dict, batch: int, capacity: int, threads: int = 2):
        self.sess = ort_session(path, threads)
        # the cache in the graph's own dtype (float16 in an fp16 decoder)
        dtypes = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in self.sess.get_inputs()}
        self.kv = {i["name"]: np.zeros([batch] + [capacity if d == "capacity" else d for d in i["shape"][1:]],
                                       dtypes[i["name"]])
                   for i in spec["inputs"] if i["name"].startswith(("past_key_", "past_value_"))}
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.past = 0
        self.alignment = None  # the multilingual decoder's `alignment` output of the last step

    def step(self, x: np.ndarray) -> np.ndarray:
        """Runs `x` [B, seq, D]; returns the last position's logits [B, V]."""
        out = self.sess.run(None, {"inputs_embeds": x, "past_len": np.array([self.past], np.int64), **self.kv})
        self.past += x.shape[1]
        self.kv = {"past_" + n[len("present_"):]: v for n, v in zip(self.outputs, out) if n.startswith("present_")}
        if "alignment" in self.outputs:
            self.alignment = out[self.outputs.index("alignment")][:, :self.past]
        return out[0][:, -1]


def _bundle_inputs(bundle: Path, manifest: dict, n_text: int, seed: int):
    """The prefill embeddings [B, S, D] of the engine's layout for the bundle's default
    voice and a fixed random text, and a function (token, position) -> [B, 1, D]."""
    cfg = manifest["config"]
    turbo = manifest["model"].get("family", "original") == "turbo"
    voice = read_safetensors(bundle / "voice.safetensors")
    prompt = voice["t3.cond_prompt_speech_tokens"].astype(np.int64)
    spk = voice["t3.speaker_emb"].astype(np.float32)
    sess = {name: ort_session(bundle / f"{name}.onnx") for name in ("t3_text_embed", "t3_speech_embed", "t3_cond")}
    rng = np.random.default_rng(seed)
    start = cfg["speech"]["start_token"]
    if turbo:
        ids = rng.integers(0, 50257, n_text)[None].astype(np.int64)  # GPT-2 ids, no tags
        pe = sess["t3_speech_embed"].run(None, {"tokens": prompt})[0]
        cond = sess["t3_cond"].run(None, {"speaker_emb": spk, "prompt_embeds": pe})[0]
        te = sess["t3_text_embed"].run(None, {"tokens": ids})[0]
        bos = sess["t3_speech_embed"].run(None, {"tokens": np.array([[start]], np.int64)})[0]

        def speech(tok, _pos):
            return sess["t3_speech_embed"].run(None, {"tokens": np.array([[tok]], np.int64)})[0]

        return np.concatenate([cond, te, bos], 1).astype(np.float32), speech, 1
    t = cfg["text"]
    pool = np.array([i for i in range(3, t["vocab_size"]) if i not in (t["start_token"], t["stop_token"])])
    ids = np.concatenate([[t["start_token"]], rng.choice(pool, n_text), [t["stop_token"]]]).astype(np.int64)
    batch = 2 if manifest["generation"]["cfg_weight"] > 0 else 1
    pe = sess["t3_speech_embed"].run(None, {"tokens": prompt,
                                            "positions": np.arange(prompt.shape[1], dtype=np.int64)[None]})[0]
    exag = np.full((1, 1, 1), manifest["generation"]["exaggeration"], np.float32)
    cond = sess["t3_cond"].run(None, {"speaker_emb": spk, "prompt_embeds": pe, "exaggeration": exag})[0]
    te, tp = sess["t3_text_embed"].run(None, {"tokens": np.tile(ids[None], (batch, 1))})
    if batch == 2:
        te[1] = 0  # the unconditional row: text token embeddings zeroed, positions kept

    def speech(tok, pos):
        return sess["t3_speech_embed"].run(None, {"tokens": np.full((batch, 1), tok, np.int64),
                                                  "positions": np.full((batch, 1), pos, np.int64)})[0]

    bos = speech(start, 0)
    x = np.concatenate([np.concatenate([cond] * batch), te + tp, bos, bos], 1)  # BOS twice, as T3.inference
    return x.astype(np.float32), speech, batch


def _processed(rows: np.ndarray, history: list, gen: dict, turbo: bool) -> np.ndarray:
    """The sampling logits before truncation: CFG (original, batch 2), repetition
    penalty over the distinct history ids, / temperature (float64)."""
    rows = rows.astype(np.float64)
    lg = rows[0] if turbo or rows.shape[0] == 1 else rows[0] + gen["cfg_weight"] * (rows[0] - rows[1])
    lg = lg.copy()
    idx = np.unique(np.asarray(history, np.int64))
    p = gen["repetition_penalty"]
    lg[idx] = np.where(lg[idx] < 0, lg[idx] * p, lg[idx] / p)
    return lg / gen["temperature"]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def _draw(lg: np.ndarray, gen: dict, turbo: bool, num_codes: int, rng) -> int:
    """A speech code from the fp32 distribution after the family's truncation (original:
    min_p; Turbo: top_k; top_p 1 for both), ids >= `num_codes` (start, stop, unused)
    excluded, as the engine's benchmark does to run a fixed number of tokens."""
    lg = lg.copy()
    lg[num_codes:] = -np.inf
    if turbo:
        k = int(gen.get("top_k", 0))
        if 0 < k < lg.size:
            lg[lg < np.sort(lg)[-k]] = -np.inf
    p = np.exp(lg - lg.max())
    if not turbo and gen["min_p"] > 0:
        p[p < gen["min_p"] * p.max()] = 0.0
    p /= p.sum()
    return int(rng.choice(p.size, p=p))


def reference_run(fp32_bundle: Path, tokens: int = DEFAULT_TOKENS, seed: int = CHECK_SEED,
                  threads: int = 2) -> dict:
    """The fp32 side of the teacher-forced check: prefill (the engine's layout, the
    bundle's default voice, a fixed text of `CHECK_TEXT_TOKENS` random ids), then
    `tokens` speech codes drawn one at a time from the fp32 graph's own distribution
    (`_draw`, seeded) and fed back on the KV cache. Returns every step's input
    embeddings, the drawn tokens and the fp32 logits [B, V] of each step."""
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    turbo = manifest["model"].get("family", "original") == "turbo"
    gen, speech_cfg = manifest["generation"], manifest["config"]["speech"]
    x, speech, batch = _bundle_inputs(fp32_bundle, manifest, CHECK_TEXT_TOKENS, seed)
    capacity = x.shape[1] + tokens
    dec = KvDecoder(fp32_bundle / "t3_decoder.onnx", manifest["components"]["t3_decoder"], batch, capacity, threads)
    rng = np.random.default_rng(seed)
    history = [speech_cfg["start_token"]]
    inputs, logits, alignments = [x], [], []
    for j in range(tokens + 1):
        logits.append(dec.step(inputs[-1]))
        alignments.append(dec.alignment)
        if j < tokens:
            history.append(_draw(_processed(logits[-1], history, gen, turbo), gen, turbo, speech_cfg["num_codes"], rng))
            inputs.append(speech(history[-1], j + 1))
    return {"manifest": manifest, "turbo": turbo, "batch": batch, "capacity": capacity, "seed": seed,
            "inputs": inputs, "history": history, "logits": logits, "alignments": alignments}


def replay_error(ref: dict, quant_decoder: Path, threads: int = 2, log=print) -> dict:
    """A quantized `t3_decoder` on the inputs of `reference_run`, against its fp32
    logits. Per step (prefill included): relative L2 error of the raw logits of each
    batch row; KL(p_fp32 || p_quant) of the sampling distributions (CFG, repetition
    penalty over the tokens so far, the manifest's temperature; no truncation, so top_p
    1, min_p 0, top_k off); whether their argmax agrees; and, for scale, the mean
    entropy (nats) of the fp32 distribution."""
    manifest, turbo = ref["manifest"], ref["turbo"]
    gen = manifest["generation"]
    dec = KvDecoder(quant_decoder, manifest["components"]["t3_decoder"], ref["batch"], ref["capacity"], threads)
    rel, kl, agree, entropy, rel_align = [], [], [], [], []
    for j, (x, lf) in enumerate(zip(ref["inputs"], ref["logits"])):
        lq = dec.step(x)
        if dec.alignment is not None:
            af = ref["alignments"][j].astype(np.float64)
            rel_align.append(float(np.linalg.norm(dec.alignment - af) / np.linalg.norm(af)))
        rel += [float(np.linalg.norm(q - f) / np.linalg.norm(f)) for f, q in zip(lf.astype(np.float64), lq)]
        history = ref["history"][:j + 1]
        pf, pq = _processed(lf, history, gen, turbo), _processed(lq, history, gen, turbo)
        lpf, lpq = _log_softmax(pf), _log_softmax(pq)
        kl.append(max(0.0, float(np.sum(np.exp(lpf) * (lpf - lpq)))))
        agree.append(bool(np.argmax(pf) == np.argmax(pq)))
        entropy.append(float(-np.sum(np.exp(lpf) * lpf)))
    tokens = len(ref["inputs"]) - 1
    res = {
        "tokens": tokens,
        "prefill": int(ref["inputs"][0].shape[1]),
        "batch": ref["batch"],
        "temperature": gen["temperature"],
        "seed": ref["seed"],
        "max_rel_error": max(rel),
        "median_rel_error": float(np.median(rel)),
        "kl_mean": float(np.mean(kl)),
        "kl_max": float(np.max(kl)),
        "argmax_agreement": float(np.mean(agree)),
        "fp32_entropy_mean": float(np.mean(entropy)),
    }
    if rel_align:  # multilingual: the alignment heads' attention (t3_decoder's `alignment` output)
        res["alignment_max_rel_error"] = max(rel_align)
    log(f"  t3_decoder vs fp32, prefill {res['prefill']} + {tokens} forced tokens (batch {res['batch']}): "
        f"logits rel error max {res['max_rel_error']:.3g} median {res['median_rel_error']:.3g}, "
        f"KL mean {res['kl_mean']:.3g} max {res['kl_max']:.3g}, argmax agreement {100 * res['argmax_agreement']:.1f} %"
        + (f", alignment rel error max {res['alignment_max_rel_error']:.3g}" if rel_align else ""))
    return res


def t3_error(fp32_bundle: Path, quant_decoder: Path, tokens: int = DEFAULT_TOKENS, seed: int = CHECK_SEED,
             threads: int = 2, log=print) -> dict:
    """`quant_decoder` against `fp32_bundle`'s fp32 `t3_decoder` under teacher forcing
    (`reference_run`, then `replay_error`)."""
    return replay_error(reference_run(fp32_bundle, tokens, seed, threads), quant_decoder, threads, log)


# ----------------------------------------------------------------------------- flow check


def _t_span(steps: int, schedule: str) -> np.ndarray:
    """The engine's time points (src/s3gen/flow.rs), float32: cosine `1 - cos(s pi / 2)`
    or linear, s = linspace(0, 1, steps + 1)."""
    s = np.arange(steps + 1, dtype=np.float32) / np.float32(max(steps, 1))
    if schedule == "linear":
        return s
    return (np.float32(1) - np.cos(s * np.float32(0.5 * np.pi))).astype(np.float32)


def flow_inputs(bundle: Path, manifest: dict, tokens: int, seed: int, threads: int = 2) -> dict:
    """What the engine gives the Euler loop for the bundle's default voice and `tokens`
    random speech codes (seeded; Turbo's appended silence tokens after them): `mu` and
    `spks` from the bundle's `flow_encoder`, `cond` (the prompt mel in the first prompt
    frames, zeros after), the start noise, and with CFG the unconditional row (mu, spks,
    cond zeroed) as batch row 1."""
    cfg, gen = manifest["config"], manifest["generation"]
    voice = read_safetensors(bundle / "voice.safetensors")
    rng = np.random.default_rng(seed)
    speech = rng.integers(0, cfg["speech"]["num_codes"], tokens)
    if manifest["model"].get("family", "original") == "turbo":
        speech = np.concatenate([speech, np.full(cfg["speech"]["silence_tokens"], cfg["speech"]["silence_token"])])
    toks = np.concatenate([voice["gen.prompt_token"].reshape(-1), speech]).astype(np.int64)[None]
    mu, spks = ort_session(bundle / "flow_encoder.onnx", threads).run(
        None, {"tokens": toks, "speaker_emb": voice["gen.embedding"].astype(np.float32)})
    frames = mu.shape[2]
    feat = voice["gen.prompt_feat"].astype(np.float32)[0]  # [prompt_frames, 80]
    prompt = feat.shape[0]
    cond = np.zeros((1, 80, frames), np.float32)
    cond[0, :, :prompt] = feat.T
    rate = float(gen["flow_cfg_rate"])
    batch = 2 if rate != 0 else 1

    def rows(a):
        return np.concatenate([a] + [np.zeros_like(a)] * (batch - 1)).astype(np.float32)

    return {"mu": rows(mu), "spks": rows(spks), "cond": rows(cond), "mask": np.ones((batch, 1, frames), np.float32),
            "noise": rng.standard_normal((1, 80, frames)).astype(np.float32), "batch": batch, "frames": frames,
            "prompt_frames": prompt, "cfg_rate": np.float32(rate), "steps": int(gen["flow_steps"]),
            "schedule": gen.get("flow_schedule", "cosine"), "meanflow": bool(cfg["s3gen"].get("meanflow", False)),
            "tokens": int(len(speech))}


def _flow_feeds(inp: dict, x: np.ndarray, t, r) -> dict:
    b = inp["batch"]
    feeds = {"x": np.concatenate([x] * b), "mask": inp["mask"], "mu": inp["mu"], "t": np.full(b, t, np.float32),
             "spks": inp["spks"], "cond": inp["cond"]}
    if inp["meanflow"]:
        feeds["r"] = np.full(b, r, np.float32)
    return feeds


def euler(sess, inp: dict, noise: np.ndarray | None = None, record: list | None = None) -> np.ndarray:
    """The engine's Euler loop (src/s3gen/flow.rs `solve_euler`) with `sess` as the
    estimator; returns the mel after the prompt frames [1, 80, frames - prompt]. With
    `record`, appends each step's (feeds, velocity output)."""
    x = (inp["noise"] if noise is None else noise).copy()
    ts = _t_span(inp["steps"], inp["schedule"])
    rate = inp["cfg_rate"]
    for t, r in zip(ts[:-1], ts[1:]):
        feeds = _flow_feeds(inp, x, t, r)
        v = sess.run(["velocity"], feeds)[0]
        if record is not None:
            record.append((feeds, v))
        vel = (np.float32(1) + rate) * v[:1] - rate * v[1:2] if inp["batch"] == 2 else v
        x = x + (r - t) * vel
    return x[:, :, inp["prompt_frames"]:]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def vocode(bundle: Path, manifest: dict, mel: np.ndarray, seed: int, threads: int = 2,
           hift: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HiFT (the bundle's, or the graph `hift`) on `mel` [1, 80, frames] with seeded draws
    (the same for every mel of one seed), and the log-mel of the wav by the bundle's own
    `s3gen_mel`: (wav, log-mel)."""
    s3 = manifest["config"]["s3gen"]
    rng = np.random.default_rng(seed + 1)
    h = s3["hift_harmonics"]
    phase = rng.uniform(-np.pi, np.pi, (1, h, 1)).astype(np.float32)
    phase[0, 0, 0] = 0.0
    noise = rng.standard_normal((1, h, mel.shape[2] * s3["samples_per_mel_frame"])).astype(np.float32)
    wav = ort_session(hift or bundle / "hift.onnx", threads).run(None, {"mel": mel.astype(np.float32), "phase_init": phase,
                                                                "sine_noise": noise})[0]
    logmel = ort_session(bundle / "s3gen_mel.onnx", threads).run(None, {"wav": wav})[0]
    return wav, logmel


def flow_reference_run(fp32_bundle: Path, tokens: int = DEFAULT_TOKENS, seed: int = CHECK_SEED,
                       threads: int = 2) -> dict:
    """The fp32 side of the flow check: `flow_inputs`, the Euler loop on the fp32
    `flow_estimator` (each step's inputs and velocity kept), HiFT and the log-mel of its
    wav."""
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    inp = flow_inputs(fp32_bundle, manifest, tokens, seed, threads)
    steps = []
    mel = euler(ort_session(fp32_bundle / "flow_estimator.onnx", threads), inp, record=steps)
    wav, logmel = vocode(fp32_bundle, manifest, mel, seed, threads)
    return {"bundle": fp32_bundle, "manifest": manifest, "inputs": inp, "seed": seed, "steps": steps, "mel": mel,
            "wav": wav, "logmel": logmel}


def flow_replay_error(ref: dict, quant_estimator: Path, threads: int = 2, log=print) -> dict:
    """A quantized `flow_estimator` against `flow_reference_run`, per stage: the velocity
    (graph output, both CFG rows) of one call on each fp32 step's inputs; the mel after
    its own Euler loop from the same noise; HiFT on that mel with the same draws: the
    wav and its log-mel (`s3gen_mel`, natural log). Relative L2 errors, plus the mean
    absolute log-mel difference."""
    sess = ort_session(quant_estimator, threads)
    inp = ref["inputs"]
    vel = [_rel(sess.run(["velocity"], feeds)[0], v) for feeds, v in ref["steps"]]
    mel = euler(sess, inp)
    wav, logmel = vocode(ref["bundle"], ref["manifest"], mel, ref["seed"], threads)
    ts = _t_span(inp["steps"], inp["schedule"])
    res = {
        "tokens": inp["tokens"], "frames": inp["frames"], "prompt_frames": inp["prompt_frames"],
        "batch": inp["batch"], "steps": inp["steps"], "seed": ref["seed"],
        "t": [float(t) for t in ts[:-1]],
        "velocity_rel_error": vel,
        "max_rel_error": max(vel),
        "median_rel_error": float(np.median(vel)),
        "mel_rel_error": _rel(mel, ref["mel"]),
        "mel_max_abs_error": float(np.abs(mel.astype(np.float64) - ref["mel"]).max()),
        "wav_rel_error": _rel(wav, ref["wav"]),
        "log_mel_l1": float(np.abs(logmel.astype(np.float64) - ref["logmel"]).mean()),
        "log_mel_rel_error": _rel(logmel, ref["logmel"]),
    }
    log(f"  flow_estimator vs fp32, {res['tokens']} tokens, {res['frames']} frames ({res['prompt_frames']} prompt), "
        f"batch {res['batch']}, {res['steps']} steps: velocity rel error max {res['max_rel_error']:.3g} median "
        f"{res['median_rel_error']:.3g}; mel {res['mel_rel_error']:.3g}; wav {res['wav_rel_error']:.3g}, "
        f"log-mel L1 {res['log_mel_l1']:.3g}")
    return res


def flow_error(fp32_bundle: Path, quant_estimator: Path, tokens: int = DEFAULT_TOKENS, seed: int = CHECK_SEED,
               threads: int = 2, log=print) -> dict:
    """`quant_estimator` against `fp32_bundle`'s fp32 `flow_estimator` (`flow_reference_run`,
    then `flow_replay_error`)."""
    return flow_replay_error(flow_reference_run(fp32_bundle, tokens, seed, threads), quant_estimator, threads, log)


# ----------------------------------------------------------------------------- fp16 checks


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def encoder_error(fp32_bundle: Path, encoder: Path, tokens: int = DEFAULT_TOKENS, seed: int = CHECK_SEED,
                  threads: int = 2, log=print) -> dict:
    """`encoder` (a `flow_encoder` graph) against `fp32_bundle`'s on the engine's input for the
    bundle's default voice: its prompt tokens then `tokens` and `tokens // 2` random speech
    codes (seeded), and its x-vector. Relative L2 and largest absolute error of `mu`, relative
    error of `spks`."""
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    cfg = manifest["config"]
    voice = read_safetensors(fp32_bundle / "voice.safetensors")
    rng = np.random.default_rng(seed)
    speech = rng.integers(0, cfg["speech"]["num_codes"], tokens)
    ref_sess, sess = ort_session(fp32_bundle / "flow_encoder.onnx", threads), ort_session(encoder, threads)
    rel, spks, worst, lengths = [], [], 0.0, []
    for n in (tokens, max(1, tokens // 2)):
        toks = np.concatenate([voice["gen.prompt_token"].reshape(-1), speech[:n]]).astype(np.int64)[None]
        feeds = {"tokens": toks, "speaker_emb": voice["gen.embedding"].astype(np.float32)}
        (mu32, s32), (mu16, s16) = ref_sess.run(None, feeds), sess.run(None, feeds)
        rel.append(_rel(mu16, mu32))
        spks.append(_rel(s16, s32))
        worst = max(worst, _max_abs(mu16, mu32))
        lengths.append({"tokens": int(toks.shape[1]), "frames": int(mu32.shape[2])})
    res = {"max_rel_error": max(rel), "spks_rel_error": max(spks), "max_abs_error": worst, "lengths": lengths}
    log(f"  flow_encoder vs fp32, {[x['tokens'] for x in lengths]} tokens: mu rel error {res['max_rel_error']:.3g} "
        f"(max abs {worst:.3g}), spks {res['spks_rel_error']:.3g}")
    return res


def hift_error(ref: dict, hift: Path, threads: int = 2, log=print) -> dict:
    """`hift` against the fp32 bundle's HiFT on the mel of `flow_reference_run` (whole, and its
    first half), with the same draws: relative L2 and largest absolute error of the wav, mean
    absolute difference of its log-mel."""
    mel = ref["mel"]
    rel, worst, l1, lengths = [], 0.0, [], []
    for frames in (mel.shape[2], max(1, mel.shape[2] // 2)):
        m = np.ascontiguousarray(mel[:, :, :frames])
        w32, lm32 = vocode(ref["bundle"], ref["manifest"], m, ref["seed"], threads)
        w16, lm16 = vocode(ref["bundle"], ref["manifest"], m, ref["seed"], threads, hift=hift)
        rel.append(_rel(w16, w32))
        worst = max(worst, _max_abs(w16, w32))
        l1.append(float(np.abs(lm16.astype(np.float64) - lm32).mean()))
        lengths.append({"frames": int(frames), "samples": int(w32.shape[1])})
    res = {"max_rel_error": max(rel), "max_abs_error": worst, "log_mel_l1": max(l1), "lengths": lengths}
    log(f"  hift vs fp32, {[x['frames'] for x in lengths]} mel frames: wav rel error {res['max_rel_error']:.3g} "
        f"(max abs {worst:.3g}), log-mel L1 {res['log_mel_l1']:.3g}")
    return res


def _fp16_component(name: str, src: Path, out: Path, manifest: dict, tokens: int, log) -> None:
    """Writes OUT's fp16-compute `name` graph (fp16_graph.convert), checks it against SRC's
    fp32 one and updates its manifest entry (files, precision, dtypes, fp16, self_check)."""
    import onnxruntime

    import fp16_graph

    spec = manifest["components"][name]
    model = load_onnx(src / f"{name}.onnx")
    # float inputs and outputs stay float32 at the graph's edge, except the decoder's KV
    # cache, which lives in float16 (bound in place; a cast would copy it every step)
    keep_io = [n for n in fp16_graph.float_io(model) if not n.startswith(("past_", "present_"))]
    log(f"converting {src / (name + '.onnx')} to fp16 compute")
    model, info = fp16_graph.convert(model, keep_io)
    dtypes = fp16_graph.tensor_dtypes(model)
    files = save_onnx(model, out / f"{name}.onnx")
    del model
    info["float32_io"] = keep_io
    info["onnxruntime"] = onnxruntime.__version__
    info["fp32_sha256"] = spec["files"][0]["sha256"]
    fp32_mb = sum(f["bytes"] for f in spec["files"]) / 1e6
    prev = spec["self_check"]["max_rel_error"]
    path = out / f"{name}.onnx"
    if name == "t3_decoder":
        err = t3_error(src, path, tokens, log=log)
        check = {k: err[k] for k in ("max_rel_error", "median_rel_error", "kl_mean", "kl_max", "argmax_agreement")}
        if "alignment_max_rel_error" in err:
            check["alignment_max_rel_error"] = err["alignment_max_rel_error"]
        check["lengths"] = [{"batch": err["batch"], "seq": err["prefill"], "past": 0},
                            {"batch": err["batch"], "seq": 1, "past": err["prefill"], "steps": err["tokens"]}]
    elif name == "flow_estimator":
        err = flow_error(src, path, tokens, log=log)
        check = {k: err[k] for k in ("max_rel_error", "median_rel_error", "mel_rel_error", "wav_rel_error",
                                     "log_mel_l1", "tokens", "prompt_frames")}
        check["mel_max_abs_error"] = err["mel_max_abs_error"]
        check["lengths"] = [{"batch": err["batch"], "frames": err["frames"], "t": t} for t in err["t"]]
    elif name == "flow_encoder":
        check = encoder_error(src, path, tokens, log=log)
    else:
        check = hift_error(flow_reference_run(src, tokens), path, log=log)
    check["max_rel_error_fp32"] = prev
    for t in spec["inputs"] + spec["outputs"]:
        t["dtype"] = dtypes[t["name"]]
    spec["files"] = [file_entry(f, out) for f in files]
    spec["precision"] = "fp16"
    spec["fp16"] = info
    spec["self_check"] = check
    log(f"{name}: {sum(f['bytes'] for f in spec['files']) / 1e6:.2f} MB fp16 (fp32 {fp32_mb:.2f} MB)")


# ----------------------------------------------------------------------------- bundle


def _quantize_component(name: str, src: Path, out: Path, manifest: dict, precision: str, block_size: int,
                        accuracy_level: int, keep_fp32: frozenset, tokens: int, flow_method: str, per_channel: bool,
                        log) -> None:
    """Writes OUT's quantized `name` graph, checks it against SRC's fp32 one and updates
    its manifest entry (files, precision, quantization, self_check) in `manifest`."""
    import onnxruntime

    spec = manifest["components"][name]
    bits = PRECISION_BITS[precision]
    model = load_onnx(src / f"{name}.onnx")
    if name == "t3_decoder":
        log(f"quantizing {src / 't3_decoder.onnx'} to {precision} (block {block_size}, accuracy level "
            f"{accuracy_level}, fp32: {', '.join(sorted(keep_fp32)) or 'nothing'})")
        qmodel, info = quantize_decoder(model, bits, block_size, accuracy_level, set(keep_fp32),
                                        manifest["config"]["speech"]["vocab_size"])
    elif flow_method == "dynamic":
        log(f"quantizing {src / 'flow_estimator.onnx'} to dynamic int8 (weights per "
            f"{'column' if per_channel else 'tensor'})")
        qmodel, info = quantize_flow_dynamic(model, per_channel)
    else:
        log(f"quantizing {src / 'flow_estimator.onnx'} to {precision} (block {block_size}, "
            f"accuracy level {accuracy_level})")
        qmodel, info = quantize_flow_nbits(model, bits, block_size, accuracy_level)
    del model
    files = save_onnx(qmodel, out / f"{name}.onnx")
    del qmodel
    info["onnxruntime"] = onnxruntime.__version__
    info["fp32_sha256"] = spec["files"][0]["sha256"]
    fp32_mb = sum(f["bytes"] for f in spec["files"]) / 1e6
    prev = spec["self_check"]
    if name == "t3_decoder":
        err = t3_error(src, out / "t3_decoder.onnx", tokens, log=log)
        check = {
            "max_rel_error": err["max_rel_error"],
            "median_rel_error": err["median_rel_error"],
            "kl_mean": err["kl_mean"],
            "kl_max": err["kl_max"],
            "argmax_agreement": err["argmax_agreement"],
            "max_rel_error_fp32": prev["max_rel_error"],
            **({"alignment_max_rel_error": err["alignment_max_rel_error"]} if "alignment_max_rel_error" in err else {}),
            "lengths": [{"batch": err["batch"], "seq": err["prefill"], "past": 0},
                        {"batch": err["batch"], "seq": 1, "past": err["prefill"], "steps": err["tokens"]}],
        }
    else:
        err = flow_error(src, out / "flow_estimator.onnx", tokens, log=log)
        check = {
            "max_rel_error": err["max_rel_error"],
            "median_rel_error": err["median_rel_error"],
            "mel_rel_error": err["mel_rel_error"],
            "wav_rel_error": err["wav_rel_error"],
            "log_mel_l1": err["log_mel_l1"],
            "max_rel_error_fp32": prev["max_rel_error"],
            "tokens": err["tokens"],
            "prompt_frames": err["prompt_frames"],
            "lengths": [{"batch": err["batch"], "frames": err["frames"], "t": t} for t in err["t"]],
        }
    spec["files"] = [file_entry(f, out) for f in files]
    spec["precision"] = precision
    spec["quantization"] = info
    spec["self_check"] = check
    log(f"{name}: {sum(f['bytes'] for f in spec['files']) / 1e6:.2f} MB {precision} (fp32 {fp32_mb:.2f} MB)")


def quantize_bundle(src: Path, out: Path, precisions: dict, block_size: int = DEFAULT_BLOCK_SIZE,
                    accuracy_level: int = DEFAULT_ACCURACY_LEVEL, keep_fp32: frozenset = frozenset(),
                    tokens: int = DEFAULT_TOKENS, flow_method: str = DEFAULT_FLOW_METHOD, per_channel: bool = True,
                    log=print) -> dict:
    """Writes the bundle `out` from `src` with each component of `precisions`
    (name -> "int8" / "int4", names from COMPONENTS) quantized; returns its manifest."""
    manifest = json.loads((src / "manifest.json").read_text())
    for name, precision in precisions.items():
        allowed = FP16_COMPONENTS if precision == "fp16" else COMPONENTS
        if name not in allowed:
            raise QuantizeError(f"cannot convert {name} to {precision}; choose from {', '.join(allowed)}")
        have = manifest["components"][name]["precision"]
        if have != "fp32":
            raise QuantizeError(f"{src}: {name} is {have}; quantize an fp32 {name}")
        if name == "flow_estimator" and flow_method == "dynamic" and precision == "int4":
            raise QuantizeError(f"flow_estimator={precision}: --flow-method dynamic is int8 only (int4: --flow-method nbits)")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise QuantizeError("--out must be outside --bundle")
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").is_file():
            raise QuantizeError(f"{out}: exists, is not empty and holds no manifest.json; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        rewritten = {f["path"] for name in precisions for f in manifest["components"][name]["files"]}
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src).as_posix()
            if p.is_file() and rel not in rewritten and rel != "manifest.json":
                link_or_copy(p, out / rel)
        suffix = ""
        for name in COMPONENTS:  # a fixed order: "-int8", "-flow-int8", "-int4-flow-int8", then "-fp16"
            if precisions.get(name, "fp16") != "fp16":
                suffix += f"-{precisions[name]}" if name == "t3_decoder" else f"-flow-{precisions[name]}"
        if "fp16" in precisions.values():
            suffix += "-fp16"
        for name in FP16_COMPONENTS:
            if precisions.get(name) == "fp16":
                _fp16_component(name, src, out, manifest, tokens, log)
            elif name in precisions:
                _quantize_component(name, src, out, manifest, precisions[name], block_size, accuracy_level,
                                    keep_fp32, tokens, flow_method, per_channel, log)
        manifest["model"]["id"] = f"{manifest['model']['id']}{suffix}"
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written bundle (a rerun would refuse it)
        raise
    log(f"bundle written to {out}")
    return manifest


def parse_components(text: str, precision: str | None) -> dict:
    """`--components` ("t3_decoder", "flow_estimator=int8", comma-separated) with
    `--precision` as the precision of the names given without one: {name: precision}."""
    out = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, _, p = item.partition("=")
        p = p or precision
        if name not in FP16_COMPONENTS:
            raise ValueError(f"unknown component {name!r}; choose from {', '.join(FP16_COMPONENTS)}")
        if p is None:
            raise ValueError(f"{name}: no precision (give --precision or {name}=int8)")
        if p not in PRECISIONS:
            raise ValueError(f"{name}: precision {p!r}; choose from {', '.join(PRECISIONS)}")
        if p != "fp16" and name not in COMPONENTS:
            raise ValueError(f"{name}: only fp16 (int8 / int4: {', '.join(COMPONENTS)})")
        if name in out:
            raise ValueError(f"{name} given twice")
        out[name] = p
    if not out:
        raise ValueError("no component to quantize")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="fp16-compute graphs, quantized t3_decoder (weight-only int8 / int4, "
                                            "MatMulNBits) and "
                                            "flow_estimator (int8) for a bundle")
    p.add_argument("--bundle", type=Path, required=True, help="an fp32 bundle")
    p.add_argument("--out", type=Path, required=True, help="the quantized bundle to write")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="precision of the --components given without one (fp16: compute in float16, "
                        "fp32 islands for norms, softmax, positions and phases)")
    p.add_argument("--components", metavar="LIST",
                   help="comma-separated components to convert, each NAME or NAME=PRECISION: "
                        f"{', '.join(COMPONENTS)} (int8 / int4), {', '.join(FP16_COMPONENTS)} (fp16) "
                        f"(default t3_decoder; with --precision fp16 {','.join(FP16_COMPONENTS)})")
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                   help=f"values per scale along K, a power of 2 >= 16 (default {DEFAULT_BLOCK_SIZE})")
    p.add_argument("--accuracy-level", type=int, choices=[0, 1, 2, 3, 4], default=DEFAULT_ACCURACY_LEVEL,
                   help="MatMulNBits accuracy_level: 0 unset (fp32 compute on CPU), 4 int8 activations "
                        f"(default {DEFAULT_ACCURACY_LEVEL})")
    p.add_argument("--keep-fp32", default="", metavar="LIST",
                   help="t3_decoder: comma-separated weights to leave fp32: head (the speech head), positions "
                        "(Turbo's position table); default none")
    p.add_argument("--flow-method", choices=FLOW_METHODS, default=DEFAULT_FLOW_METHOD,
                   help="flow_estimator: dynamic (int8 weights, activations quantized per tensor at run time, "
                        "MatMulInteger; int8 only) or nbits (weight-only MatMulNBits as for t3_decoder: half the "
                        f"error, not faster on a CPU at the flow's sizes) (default {DEFAULT_FLOW_METHOD})")
    p.add_argument("--flow-weight-scale", choices=("column", "tensor"), default="column",
                   help="flow_estimator, --flow-method dynamic: one weight scale per output column or one per "
                        "tensor (default column)")
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS,
                   help=f"t3_decoder: forced tokens of the error check; flow_estimator: speech tokens after the "
                        f"voice's prompt (default {DEFAULT_TOKENS})")
    args = p.parse_args(argv)
    if args.block_size < 16 or args.block_size & (args.block_size - 1):
        p.error("--block-size must be a power of 2, at least 16")
    if args.tokens < 1:
        p.error("--tokens must be at least 1")
    args.keep_fp32 = frozenset(x for x in args.keep_fp32.split(",") if x)
    if not args.keep_fp32 <= KEEP_FP32:
        p.error(f"--keep-fp32: unknown {sorted(args.keep_fp32 - KEEP_FP32)}; choose from {sorted(KEEP_FP32)}")
    if args.components is None:
        args.components = ",".join(FP16_COMPONENTS) if args.precision == "fp16" else "t3_decoder"
    try:
        args.components = parse_components(args.components, args.precision)
    except ValueError as e:
        p.error(f"--components: {e}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        quantize_bundle(args.bundle, args.out, args.components, args.block_size, args.accuracy_level,
                        args.keep_fp32, args.tokens, args.flow_method, args.flow_weight_scale == "column")
    except (QuantizeError, OSError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
