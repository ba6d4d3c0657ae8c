"""Rewrites of exported graphs into forms ONNX Runtime's CPU provider runs faster, with the same
outputs. No torch: the export applies them to each fresh flow estimator (`ESTIMATOR_PASSES`), and
this file's command line applies them to a bundle that exists (the committed tiny bundles, a
bundle exported before them):

    python export/graph_passes.py BUNDLE [--component flow_estimator]

rewrites BUNDLE/<component>.onnx in place (its external weights are not touched) and the file's
entry in BUNDLE/manifest.json. A pass that finds nothing to rewrite leaves the graph as it is, so
running it twice changes nothing.

- `mish_via_sigmoid`: Mish written by the torch exporter as `Softplus -> Tanh -> Mul(x, .)`.
  ONNX Runtime's `Softplus` is a scalar log(1 + exp(x)) per element (2.6 ms for the estimator's
  2 x 256 x 700 activations on the 2-core AVX-512 machine, 30 per call); with s = sigmoid(x),
  tanh(softplus(x)) = 2 / (1 + (1 - s)^2) - 1, which is `Sigmoid` (a vectorized kernel) and five
  element-wise nodes: 0.5 ms. No intermediate can overflow (s and 1 - s are in [0, 1]), so the
  form holds in float16 graphs too. Against float64 Mish its largest absolute error is ~1e-6
  (fp32), where ONNX Runtime's Softplus form is ~2e-6; for x below about -8 the relative error of
  the tiny values grows (their absolute error stays below ~2e-6).
- `attention_without_mask_when_unpadded`: a `com.microsoft::MultiHeadAttention` given a key
  padding mask never takes ONNX Runtime's CPU flash-attention kernel (it requires no mask); the
  engine's masks are all ones (one utterance per call, the CFG rows of equal length). Each such
  node becomes `If(min(mask) == 1)`: then the same node without the mask (flash attention), else
  the node as it was, so a padded batch is computed exactly as before. The condition is computed
  once per mask tensor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _constant(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    """An initializer `name` holding `value`, added once."""
    if not any(i.name == name for i in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _graph_outputs(graph: onnx.GraphProto) -> set[str]:
    return {o.name for o in graph.output}


def _splice(graph: onnx.GraphProto, replace: dict[int, list[onnx.NodeProto]], drop=frozenset()) -> None:
    """Rebuilds the node list: the node at position k becomes replace[k] (when listed), the
    positions in `drop` go. Positions, not nodes: protobuf's Python wrappers are transient, so
    id() of a node is not stable."""
    nodes = []
    for k, node in enumerate(graph.node):
        if k not in drop:
            nodes.extend(replace.get(k, [node]))
    del graph.node[:]
    graph.node.extend(nodes)


def mish_via_sigmoid(model: onnx.ModelProto) -> int:
    """Rewrites every `Softplus -> Tanh -> Mul(x, .)` of the main graph (each intermediate used
    once) as x * (2 / (1 + (1 - sigmoid(x))^2) - 1). Returns how many."""
    g = model.graph
    consumers = _consumers(g)
    outputs = _graph_outputs(g)
    replace: dict[int, list[onnx.NodeProto]] = {}  # by position (_splice)
    drop: set[int] = set()
    position = {n.output[0]: k for k, n in enumerate(g.node) if n.output}
    count = 0
    for k, node in enumerate(g.node):
        if node.op_type != "Softplus" or node.domain not in ("", "ai.onnx"):
            continue
        x = node.input[0]
        tanh = consumers.get(node.output[0], [])
        if len(tanh) != 1 or tanh[0].op_type != "Tanh" or node.output[0] in outputs:
            continue
        tanh = tanh[0]
        mul = consumers.get(tanh.output[0], [])
        if len(mul) != 1 or mul[0].op_type != "Mul" or tanh.output[0] in outputs:
            continue
        mul = mul[0]
        if sorted(mul.input) != sorted([x, tanh.output[0]]):
            continue
        one = _constant(g, "mish_one", np.array(1.0, np.float32))
        two = _constant(g, "mish_two", np.array(2.0, np.float32))
        p = f"{node.name or node.output[0]}/mish_sigmoid"
        # dtype-preserving: the constants are float32 here; fp16_graph converts them with the
        # rest of the graph.
        new = [
            helper.make_node("Sigmoid", [x], [f"{p}/s"], name=f"{p}/Sigmoid"),
            helper.make_node("Sub", [one, f"{p}/s"], [f"{p}/a"], name=f"{p}/Sub_a"),
            helper.make_node("Mul", [f"{p}/a", f"{p}/a"], [f"{p}/q"], name=f"{p}/Mul_q"),
            helper.make_node("Add", [one, f"{p}/q"], [f"{p}/d"], name=f"{p}/Add_d"),
            helper.make_node("Div", [two, f"{p}/d"], [f"{p}/r"], name=f"{p}/Div_r"),
            helper.make_node("Sub", [f"{p}/r", one], [tanh.output[0]], name=f"{p}/Sub_tanh"),
        ]
        replace[k] = new
        drop.add(position[tanh.output[0]])
        count += 1
    _splice(g, replace, drop)
    return count


def _value_type(graph: onnx.GraphProto, name: str) -> int | None:
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.name == name and vi.type.HasField("tensor_type"):
            return vi.type.tensor_type.elem_type
    return None


def attention_without_mask_when_unpadded(model: onnx.ModelProto) -> int:
    """Puts every MultiHeadAttention with a key padding mask (q, k, v, no bias, mask; no other
    inputs) of the main graph under `If(min(mask) == 1)`, the then-branch without the mask.
    Returns how many."""
    g = model.graph
    conditions: dict[str, str] = {}
    replace: dict[int, list[onnx.NodeProto]] = {}  # by position (_splice)
    count = 0
    for k, node in enumerate(g.node):
        if node.op_type != "MultiHeadAttention" or node.domain != MS_DOMAIN:
            continue
        ins = list(node.input)
        if len(ins) != 5 or not all(ins[:3]) or ins[3] or not ins[4] or len(node.output) != 1:
            continue
        mask = ins[4]
        new: list[onnx.NodeProto] = []
        if mask not in conditions:
            cond = f"{mask}/unpadded"
            one = _constant(g, "attention_mask_one", np.array(1, np.int32))
            new += [
                helper.make_node("ReduceMin", [mask], [f"{mask}/min"], name=f"{mask}/ReduceMin", keepdims=0),
                helper.make_node("Equal", [f"{mask}/min", one], [cond], name=f"{mask}/Unpadded"),
            ]
            conditions[mask] = cond
        out = node.output[0]
        elem = _value_type(g, out) or TensorProto.FLOAT
        branches = []
        for kind, inputs in (("flash", ins[:3]), ("masked", ins)):
            inner = helper.make_node(
                "MultiHeadAttention", inputs, [f"{out}/{kind}"], name=f"{node.name or out}/{kind}",
                domain=MS_DOMAIN,
            )
            inner.attribute.extend(node.attribute)
            branches.append(helper.make_graph(
                [inner], f"{node.name or out}_{kind}", [], [helper.make_tensor_value_info(f"{out}/{kind}", elem, None)]
            ))
        new.append(helper.make_node(
            "If", [conditions[mask]], [out], name=f"{node.name or out}/If_unpadded",
            then_branch=branches[0], else_branch=branches[1],
        ))
        replace[k] = new
        count += 1
    _splice(g, replace)
    return count


# The passes the export applies to a flow estimator (original CFM and Turbo's meanflow), in order.
ESTIMATOR_PASSES = (mish_via_sigmoid, attention_without_mask_when_unpadded)


def apply(model: onnx.ModelProto, passes=ESTIMATOR_PASSES) -> dict[str, int]:
    """Runs `passes` on `model` in place; returns each pass's count of rewrites."""
    return {p.__name__: p(model) for p in passes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--component", default="flow_estimator")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import json

    from torchless import file_entry

    manifest_path = args.bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    comp = manifest["components"].get(args.component)
    if comp is None:
        print(f"graph_passes: {manifest_path} has no component `{args.component}`", file=sys.stderr)
        return 2
    path = args.bundle / comp["files"][0]["path"]
    model = onnx.load(str(path), load_external_data=False)
    counts = apply(model)
    print(f"graph_passes: {path}: {counts}")
    if not any(counts.values()):
        return 0
    # Written beside the original (its external weights resolve the same), loaded by ONNX
    # Runtime, then moved over it: a failure leaves the bundle as it was. (onnx.checker refuses
    # external data with several hard links, which bundles made with `ln` have.)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp))
    try:
        import onnxruntime as ort

        ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(path)
    comp["files"][0] = file_entry(path, args.bundle)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
