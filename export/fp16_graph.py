"""fp16-compute graphs: an fp32 ONNX graph rewritten to compute in float16, with fp32 islands
where float16 loses the result (docs/BUNDLE.md, "fp16 bundles"). No torch.

The conversion itself is ONNX Runtime's own (`onnxruntime.transformers.float16`, shipped in the
onnxruntime wheel): every float tensor, initializer and `Cast(to=float)` becomes float16 except
in the nodes of a block list, around which it inserts Casts. This module picks that block list
from the graph's structure (`fp32_islands`):

- `norm`: the statistics of a normalisation: ONNX `LayerNormalization`; an RMSNorm or manual
  LayerNorm written as `Pow(x, 2) -> ReduceMean -> Add(eps) -> Sqrt -> Div / Reciprocal -> Mul(x, .)`
  (x^2 of an activation above 256 overflows float16); `ReduceL2` and the division by it.
- `softmax`: every `Softmax`.
- `position`: sines and cosines of positions or times (the rotary embedding, the flow
  estimator's time embedding, the flow encoder's relative positions) and every float node they
  are computed from, when none of those nodes applies a weight: a position of 1000 in float16
  is off by up to 0.5, and its sine by as much.
- `phase`: a `CumSum` and the element-wise nodes after it up to the sines it feeds (HiFT's
  source: a running phase over thousands of samples).
- ONNX Runtime's default block list (ops without float16 kernels: `Range`, `CumSum`, ...).

Inputs and outputs listed in `keep_io` stay float32 (ONNX Runtime casts them at the graph's
edge); the others that are float become float16 (the decoder's KV cache).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

# Ops that compute their own normalisation statistics.
NORM_OPS = {"LayerNormalization"}
# Element-wise ops a statistics chain, or a phase, passes through.
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal", "Clip", "Max", "Min", "Pow", "Neg", "Abs",
               "Floor", "Mod", "Cast", "Expand", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Concat",
               "Slice", "Gather", "Identity", "Resize", "Pad", "Tile"}
# Nodes that apply a weight: a chain through one of them is not a pure position / time function.
WEIGHTED = {"MatMul", "Gemm", "Conv", "ConvTranspose", "MatMulNBits"}
# An initializer of at most this many values is a constant, not a weight.
CONSTANT_MAX_ELEMENTS = 64


class Fp16Error(Exception):
    pass


def _graph_maps(g):
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in g.initializer}
    return producer, consumers, inits


def _is_constant(name: str, producer: dict, inits: dict) -> bool:
    """A small initializer or a `Constant` node's output (not an activation)."""
    if name in inits:
        return int(np.prod(inits[name].dims)) <= CONSTANT_MAX_ELEMENTS if inits[name].dims else True
    p = producer.get(name)
    return p is not None and p.op_type == "Constant"


def _norm_chain(start, producer, consumers, inits) -> list:
    """From a statistics node (ReduceMean of a square, ReduceL2) forward through the
    element-wise nodes that turn it into a scale, up to and including the node that applies
    the scale to an activation (its other input is not a constant)."""
    chain, node = [], start
    while True:
        nxt = consumers.get(node.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type not in {"Add", "Sqrt", "Div", "Reciprocal", "Mul", "Clip", "Max", "Expand"}:
            return chain
        n = nxt[0]
        chain.append(n)
        others = [i for i in n.input if i and i != node.output[0]]
        if n.op_type in {"Div", "Mul"} and any(not _is_constant(i, producer, inits) for i in others):
            return chain
        node = n


def _pure_ancestors(node, producer, inits) -> list | None:
    """Every node `node`'s float inputs are computed from (through nodes of any kind), or
    None when one of them applies a weight (an activation, not a position or time)."""
    seen, stack, out = set(), [node], []
    while stack:
        n = stack.pop()
        for i in n.input:
            p = producer.get(i)
            if p is None or p.name in seen:
                continue
            if p.op_type in {"Shape", "Size"}:  # reads a size, not values
                continue
            if p.op_type in WEIGHTED and any(j in inits and len(inits[j].dims) >= 2 for j in p.input):
                return None
            seen.add(p.name)
            out.append(p)
            stack.append(p)
    return out


def _phase_chain(cumsum, consumers) -> list:
    """The element-wise nodes after a CumSum that lead to a Sin / Cos, and those sines."""
    keep, frontier, seen = [], [cumsum], {cumsum.name}
    paths: dict[str, list] = {cumsum.name: []}
    while frontier:
        n = frontier.pop()
        for o in n.output:
            for c in consumers.get(o, []):
                if c.name in seen:
                    continue
                seen.add(c.name)
                if c.op_type in {"Sin", "Cos"}:
                    keep += paths[n.name] + [c]
                elif c.op_type in ELEMENTWISE:
                    paths[c.name] = paths[n.name] + [c]
                    frontier.append(c)
    return keep


def fp32_islands(model: onnx.ModelProto) -> dict[str, str]:
    """The nodes to keep in float32 (name -> reason: norm, softmax, position, phase)."""
    g = model.graph
    if len({n.name for n in g.node}) != len(g.node) or any(not n.name for n in g.node):
        raise Fp16Error("nodes without unique names; cannot select fp32 islands")
    producer, consumers, inits = _graph_maps(g)
    out: dict[str, str] = {}
    for n in g.node:
        if n.op_type in NORM_OPS:
            out[n.name] = "norm"
        elif n.op_type == "Softmax":
            out[n.name] = "softmax"
        elif n.op_type == "ReduceMean":
            sq = producer.get(n.input[0])
            if sq is not None and sq.op_type == "Pow":
                out[sq.name] = out[n.name] = "norm"
                for c in _norm_chain(n, producer, consumers, inits):
                    out[c.name] = "norm"
                # a manual LayerNorm: Pow(Sub(x, ReduceMean(x)), 2)
                sub = producer.get(sq.input[0])
                if sub is not None and sub.op_type == "Sub":
                    mean = producer.get(sub.input[1])
                    if mean is not None and mean.op_type == "ReduceMean":
                        out[sub.name] = out[mean.name] = "norm"
        elif n.op_type == "ReduceL2":
            out[n.name] = "norm"
            for c in _norm_chain(n, producer, consumers, inits):
                out[c.name] = "norm"
        elif n.op_type == "CumSum":
            for c in _phase_chain(n, consumers):
                out.setdefault(c.name, "phase")
    for n in g.node:
        if n.op_type in {"Sin", "Cos"}:
            anc = _pure_ancestors(n, producer, inits)
            if anc is not None:
                out.setdefault(n.name, "position")
                for a in anc:
                    if a.op_type != "Constant":
                        out.setdefault(a.name, "position")
    return out


def _infer_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` (in place) with value_info from ONNX shape inference (the converter needs every
    tensor's element type). The large initializers' bytes are set aside while it runs (it
    reads their dims and types only), so that a graph over protobuf's 2 GiB works too."""
    aside = {}
    for t in model.graph.initializer:
        if len(t.raw_data) > 4096:
            aside[t.name] = t.raw_data
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value="__set_aside__")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    finally:
        for t in model.graph.initializer:
            if t.name in aside:
                del t.external_data[:]
                t.data_location = TensorProto.DEFAULT
                t.raw_data = aside.pop(t.name)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    return model


def convert(model: onnx.ModelProto, keep_io: list[str], keep_fp32: list[str] | None = None):
    """`model` rewritten to compute in float16 (in place; returned), fp32 islands as
    `fp32_islands` finds them plus the nodes named in `keep_fp32`; `keep_io` names the
    float inputs and outputs that stay float32. Returns (model, info for the manifest)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    islands = fp32_islands(model)
    for name in keep_fp32 or []:
        islands[name] = "requested"
    names = {n.name for n in model.graph.node}
    missing = sorted(set(keep_fp32 or []) - names)
    if missing:
        raise Fp16Error(f"--keep-fp32: no node named {', '.join(missing)}")
    blocked_ops = sorted(set(DEFAULT_OP_BLOCK_LIST) & {n.op_type for n in model.graph.node})
    _infer_types(model)
    model = convert_float_to_float16(model, keep_io_types=list(keep_io), disable_shape_infer=True,
                                     op_block_list=list(DEFAULT_OP_BLOCK_LIST), node_block_list=sorted(islands))
    del model.graph.value_info[:]
    counts: dict[str, int] = {}
    for r in islands.values():
        counts[r] = counts.get(r, 0) + 1
    fp16 = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16)
    fp32 = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)
    info = {
        "method": "fp16 compute (onnxruntime.transformers.float16.convert_float_to_float16), fp32 islands",
        "fp32_nodes": dict(sorted(counts.items())),
        "fp32_ops": blocked_ops,
        "fp16_parameters": fp16,
        "fp32_parameters": fp32,
        "casts": sum(1 for n in model.graph.node if n.op_type == "Cast"),
    }
    return model, info


def float_io(model: onnx.ModelProto) -> list[str]:
    """Names of the graph's float32 inputs and outputs."""
    g = model.graph
    return [v.name for v in list(g.input) + list(g.output) if v.type.tensor_type.elem_type == TensorProto.FLOAT]


def tensor_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    """Graph input / output name -> the manifest's dtype name."""
    names = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.INT64: "int64",
             TensorProto.INT32: "int32", TensorProto.BOOL: "bool"}
    g = model.graph
    return {v.name: names.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
            for v in list(g.input) + list(g.output)}

