"""export/graph_passes.py: the flow estimator's rewrites give the outputs of the graph they
rewrite, and the committed tiny bundles carry them.

Tolerances: Mish against float64 within 3e-6 absolute (float32 arithmetic on values up to 100;
ONNX Runtime's own Softplus form is within the same bound); attention on an unpadded mask (flash
kernel against the masked kernel) within 1e-5 relative L2; on a padded mask the masked node
itself runs, so the outputs are bit-identical.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "export"))

import graph_passes  # noqa: E402


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def mish_graph(shape) -> onnx.ModelProto:
    vi = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Softplus", ["x"], ["sp"]),
        helper.make_node("Tanh", ["sp"], ["th"]),
        helper.make_node("Mul", ["x", "th"], ["y"]),
    ]
    g = helper.make_graph(nodes, "mish", [vi("x", TensorProto.FLOAT, shape)], [vi("y", TensorProto.FLOAT, shape)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def attention_graph(b, t, heads, hd) -> onnx.ModelProto:
    vi = helper.make_tensor_value_info
    d = heads * hd
    node = helper.make_node(
        "MultiHeadAttention", ["q", "k", "v", "", "mask"], ["o"], domain="com.microsoft", num_heads=heads,
        scale=hd ** -0.5, mask_filter_value=-1.0e10,
    )
    inputs = [vi(n, TensorProto.FLOAT, [b, t, d]) for n in "qkv"] + [vi("mask", TensorProto.INT32, [b, t])]
    g = helper.make_graph([node], "attention", inputs, [vi("o", TensorProto.FLOAT, [b, t, d])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_mish_rewrite_matches_float64_mish():
    x = np.concatenate([
        np.random.default_rng(0).normal(0.0, 3.0, 4000),
        np.linspace(-100.0, 100.0, 4001),
        [-1e30, -88.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 88.0, 1e30],
    ]).astype(np.float32).reshape(1, 1, -1)
    model = mish_graph(list(x.shape))
    before = run(model, {"x": x})
    assert graph_passes.mish_via_sigmoid(model) == 1
    assert not any(n.op_type in ("Softplus", "Tanh") for n in model.graph.node)
    after = run(model, {"x": x})
    xd = x.astype(np.float64)
    exact = xd * np.tanh(np.logaddexp(0.0, xd))
    assert np.all(np.isfinite(after))
    small = np.abs(xd) <= 100
    assert np.abs(after - exact)[small].max() <= 3e-6
    assert np.abs(before - exact)[small].max() <= 3e-6  # the bound is not tighter than the original
    big = ~small  # +-1e30: mish(x) = x above, 0 below
    assert np.array_equal(after[big], np.where(x[big] > 0, x[big], 0.0))
    assert graph_passes.mish_via_sigmoid(model) == 0


@pytest.mark.parametrize("padded", [0, 5])
def test_attention_rewrite_keeps_outputs(padded):
    b, t, heads, hd = 2, 23, 2, 8
    rng = np.random.default_rng(padded)
    feeds = {n: rng.standard_normal((b, t, heads * hd), dtype=np.float32) for n in "qkv"}
    mask = np.ones((b, t), np.int32)
    if padded:
        mask[1, t - padded:] = 0
    feeds["mask"] = mask
    model = attention_graph(b, t, heads, hd)
    before = run(model, feeds)
    assert graph_passes.attention_without_mask_when_unpadded(model) == 1
    (gate,) = [n for n in model.graph.node if n.op_type == "If"]
    then_branch = next(a.g for a in gate.attribute if a.name == "then_branch")
    (flash,) = then_branch.node
    assert list(flash.input) == ["q", "k", "v"]  # no mask: ONNX Runtime's flash-attention path
    after = run(model, feeds)
    if padded:
        assert np.array_equal(after, before)
    else:
        assert np.linalg.norm(after - before) / np.linalg.norm(before) <= 1e-5
    assert graph_passes.attention_without_mask_when_unpadded(model) == 0


@pytest.mark.parametrize("bundle", ["tiny", "tiny-turbo", "tiny-multilingual", "tiny-quant/original-flow-int8",
                                    "tiny-quant/turbo-flow-int8", "tiny-quant/original-fp16", "tiny-quant/turbo-fp16"])
def test_committed_estimators_carry_the_passes(bundle):
    model = onnx.load(str(REPO / "onnx" / bundle / "flow_estimator.onnx"), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    assert "Softplus" not in ops and "MultiHeadAttention" not in ops, f"{bundle}: run export/graph_passes.py"
    assert ops.count("If") >= 2
    assert graph_passes.apply(model) == {p.__name__: 0 for p in graph_passes.ESTIMATOR_PASSES}


def test_command_rewrites_a_bundle_in_place(tmp_path):
    """`python export/graph_passes.py BUNDLE`: the graph and its manifest entry are rewritten
    (torch is not needed: this environment has none), a second run changes nothing, and a
    missing component is a one-line error with exit status 2."""
    import hashlib
    import json

    onnx.save_model(mish_graph([1, 4, 9]), str(tmp_path / "flow_estimator.onnx"))
    entry = {"path": "flow_estimator.onnx", "bytes": 0, "sha256": "0" * 64}
    (tmp_path / "manifest.json").write_text(json.dumps({"components": {"flow_estimator": {"files": [entry]}}}))
    assert graph_passes.main([str(tmp_path)]) == 0
    data = (tmp_path / "flow_estimator.onnx").read_bytes()
    written = json.loads((tmp_path / "manifest.json").read_text())["components"]["flow_estimator"]["files"][0]
    assert written == {"path": "flow_estimator.onnx", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert "Softplus" not in [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert not list(tmp_path.glob("*.tmp"))
    assert graph_passes.main([str(tmp_path)]) == 0
    assert (tmp_path / "flow_estimator.onnx").read_bytes() == data
    assert graph_passes.main([str(tmp_path), "--component", "hift"]) == 2
