"""Shared machinery of the chatterbox-ort exporter.

`ExportContext.export` is the one way a component becomes an ONNX file: it
traces the module with the TorchScript exporter (opset 17), writes the graph
deterministically (external data in `<name>.onnx.data` when the weights exceed
`EXTERNAL_DATA_THRESHOLD`), rejects randomness-producing ops, checks the graph
against the module in onnxruntime and records the manifest entry.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import torch
from torchless import file_entry, ort_session, sha256_file  # noqa: F401 (re-exported to the export scripts)

OPSET = 17
# A component whose initializers exceed this many bytes keeps its weights in
# `<name>.onnx.data` (one file, tensors >= 1 KiB); smaller ones are one file.
EXTERNAL_DATA_THRESHOLD = 8 * 1024 * 1024
FP32_TOLERANCE = 1e-4
# fp16 weights round to ~2.4e-4 relative each; the error compounds through the
# network, so an fp16 graph is reported (never rejected) and flagged above this.
FP16_TOLERANCE = 1e-2
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)

_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.DOUBLE: "float64",
}

_T0 = time.time()


def log(msg: str) -> None:
    """Prints `msg` with the seconds since the exporter started."""
    print(f"[{time.time() - _T0:8.1f}s] {msg}", flush=True)


@contextmanager
def timed(what: str):
    """`with timed("exporting t3"):` logs the start and the duration of a step."""
    log(f"{what} ...")
    t = time.time()
    yield
    log(f"{what}: done in {time.time() - t:.1f}s")


class ExportError(Exception):
    """A user-facing problem (bad checkpoint file, bad argument): printed as one line."""


def require_checkpoint(ckpt: Path, files) -> None:
    """Errors (one line, naming the path) unless `ckpt` is a folder holding every file of `files`."""
    if not ckpt.is_dir():
        raise ExportError(f"{ckpt}: checkpoint folder not found")
    for f in files:
        if not (ckpt / f).is_file():
            raise ExportError(f"{ckpt / f}: missing checkpoint file")


def load_safetensors(path: Path) -> dict:
    """The tensors of a checkpoint file; ExportError naming the file if missing or malformed."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: missing checkpoint file")
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is the file's fault
        raise ExportError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None


def load_torch_state(path: Path) -> dict:
    """A state dict written by `torch.save` (the multilingual checkpoint's ve.pt / s3gen.pt),
    read as the reference reads it (`torch.load(..., weights_only=True)` on the CPU);
    ExportError naming the file if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: missing checkpoint file")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the file's fault
        raise ExportError(f"{path}: not a readable torch state dict ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ExportError(f"{path}: not a state dict of tensors")
    return state


def load_checkpoint_state(path: Path) -> dict:
    """The tensors of a checkpoint file: safetensors, or a torch.save'd state dict (.pt)."""
    return load_torch_state(path) if Path(path).suffix == ".pt" else load_safetensors(path)


def load_state_dict_strict(module: torch.nn.Module, path: Path, strict: bool = True, state: dict | None = None) -> None:
    """Loads a checkpoint file's state dict (safetensors or .pt) into `module`; ExportError
    naming the file on a mismatch."""
    state = load_checkpoint_state(path) if state is None else state
    try:
        result = module.load_state_dict(state, strict=strict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ExportError(f"{path}: does not match {type(module).__name__} ({' '.join(first[:2])[:300]})") from None
    if not strict and result.missing_keys:
        raise ExportError(f"{path}: {len(result.missing_keys)} weights of {type(module).__name__} missing, e.g. {result.missing_keys[0]}")


_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
              np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8"}


def save_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes a .safetensors file byte-for-byte deterministically (the library's writer
    orders the JSON header by hash-map iteration): tensors sorted by name, data in
    that order, header padded with spaces to a multiple of 8."""
    import json
    import struct

    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        a = np.ascontiguousarray(_to_numpy(tensors[name]))
        if a.dtype not in _ST_DTYPES:
            raise TypeError(f"{name}: dtype {a.dtype} not supported in safetensors")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------- seeded init


def _name_seed(seed: int, name: str) -> int:
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16)


def _randn(shape, seed: int, name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(_name_seed(seed, name))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


_NORM_TYPES = (
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.LayerNorm,
    torch.nn.GroupNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
)


def _is_norm(module: torch.nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


@torch.no_grad()
def seeded_init(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Gives every parameter (and BatchNorm running statistics) of `module` a
    deterministic random value that depends only on `seed` and the parameter's
    qualified name (so it is independent of traversal order and of other modules).

    Scales keep activations O(1): matrices / conv kernels N(0, 1/fan_in) with
    fan_in = numel / shape[0]; embeddings N(0, 1); norm gains 1 + 0.1 N;
    biases 0.02 N; weight-norm magnitudes ~1 (so the effective kernel has the
    1/fan_in variance); other 1-D parameters 1 + 0.1 N (gains such as Snake
    alphas stay away from 0); BatchNorm running_mean 0.1 N, running_var in
    [0.8, 1.2]. Other buffers (windows, filterbanks, positional tables) are
    deterministic constants of the architecture and are left alone.
    """
    for mod_name, mod in module.named_modules():
        for p_name, p in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            z = _randn(p.shape, seed, full)
            leaf = full.rsplit(".", 1)[-1]
            if leaf in ("original0", "weight_g"):
                v = 1.0 + 0.05 * z
            elif "bias" in leaf:
                v = 0.02 * z
            elif _is_norm(mod) or p.dim() <= 1:
                v = 1.0 + 0.1 * z
            elif isinstance(mod, torch.nn.Embedding):
                v = z
            else:
                v = z / math.sqrt(max(1, p.numel() // p.shape[0]))
            p.copy_(v.to(p.dtype))
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            if mod.running_mean is not None:
                mod.running_mean.copy_(0.1 * _randn(mod.running_mean.shape, seed, f"{mod_name}.running_mean"))
            if mod.running_var is not None:
                u = _randn(mod.running_var.shape, seed, f"{mod_name}.running_var")
                mod.running_var.copy_(1.0 + 0.2 * torch.tanh(u))
    return module


# --------------------------------------------------------------------------- onnx helpers


def graph_ops(model: onnx.ModelProto) -> set:
    """Every op type in the model, subgraphs and local functions included."""
    ops = set()

    def walk(g: onnx.GraphProto):
        for n in g.node:
            ops.add(n.op_type)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)

    walk(model.graph)
    for f in model.functions:
        for n in f.node:
            ops.add(n.op_type)
    return ops


def assert_no_random_ops(model: onnx.ModelProto, name: str) -> None:
    bad = sorted(graph_ops(model) & RANDOM_OPS)
    if bad:
        raise RuntimeError(f"component {name}: graph contains randomness-producing ops {bad}")


def value_info_entry(vi: onnx.ValueInfoProto, axes: dict | None, seen: list | None = None) -> dict:
    """{name, dtype, shape} of a graph input/output. Dynamic axes take their names
    from `axes`; a dim the exporter left symbolic without a name (e.g. a batch of 1
    it could not prove static) becomes the size it had in every self-check run
    (`seen`: the observed shapes), when that size never varied."""
    t = vi.type.tensor_type
    dtype = _ONNX_DTYPES.get(t.elem_type, onnx.TensorProto.DataType.Name(t.elem_type).lower())
    shape = []
    for i, d in enumerate(t.shape.dim):
        if axes and i in axes:
            shape.append(axes[i])
        elif d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        else:
            sizes = {s[i] for s in seen or [] if len(s) > i}
            shape.append(sizes.pop() if len(sizes) == 1 else (d.dim_param or f"{vi.name}_dim{i}"))
    return {"name": vi.name, "dtype": dtype, "shape": shape}


def pin_output_dims(path: Path, model: onnx.ModelProto, outputs: list) -> bool:
    """Writes the fixed sizes found for unnamed symbolic output dims (see
    `value_info_entry`) into the graph's output declarations, so the graph and the
    manifest agree. Only the .onnx is rewritten (`model` is loaded without its
    external data, which stays as it is). Returns whether anything changed."""
    changed = False
    for vi, entry in zip(model.graph.output, outputs):
        for d, want in zip(vi.type.tensor_type.shape.dim, entry["shape"]):
            if isinstance(want, int) and not d.HasField("dim_value"):
                d.dim_value = want  # clears dim_param (oneof)
                changed = True
    if changed:
        onnx.save_model(model, str(path))
        path.chmod(0o644)
    return changed


def _initializer_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for t in model.graph.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        total += n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    return total


def save_onnx(model: onnx.ModelProto, path: Path, external_data: bool) -> list[Path]:
    """Writes `model` deterministically; returns the files written (.onnx first)."""
    data = path.with_name(path.name + ".data")
    for p in (path, data):
        if p.exists():
            p.unlink()
    if external_data:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
            convert_attribute=False,
        )
        files = [path, data] if data.exists() else [path]
    else:
        onnx.save_model(model, str(path))
        files = [path]
    for f in files:  # onnx creates the external-data file owner-only
        f.chmod(0o644)
    return files


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    flat = []
    for o in out:
        flat.extend(_flatten(o))
    return flat


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def rel_error(ref: np.ndarray, got: np.ndarray) -> float:
    """||got - ref|| / ||ref|| (absolute error when ref is all zeros)."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        raise RuntimeError(f"shape mismatch: torch {ref.shape} vs onnxruntime {got.shape}")
    num = float(np.linalg.norm((got - ref).ravel()))
    den = float(np.linalg.norm(ref.ravel()))
    return num / den if den > 0 else num


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph computing in float16 (export/fp16_graph.py, what `quantize_bundle.py
    --precision fp16` runs): ONNX Runtime's converter with fp32 islands for norms, softmax,
    positions and phases; float inputs and outputs stay float32 except the decoder's KV cache
    (`past_*` / `present_*`), which becomes float16."""
    import fp16_graph

    keep_io = [n for n in fp16_graph.float_io(model) if not n.startswith(("past_", "present_"))]
    return fp16_graph.convert(model, keep_io)[0]


# --------------------------------------------------------------------------- context


@dataclass
class ExportContext:
    out_dir: Path
    config: str  # "tiny" | "full"
    seed: int
    checkpoint: Optional[Path]
    precision: str  # "fp32" | "fp16"
    components: dict = field(default_factory=dict)  # name -> manifest entry (filled by export)
    goldens: dict = field(default_factory=dict)  # name -> np.ndarray
    golden_notes: dict = field(default_factory=dict)  # name -> str
    want_goldens: bool = True  # tiny config, or --goldens
    threads: int = 2

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    @torch.no_grad()
    def export(
        self,
        name: str,
        module: torch.nn.Module,
        example_inputs: tuple,
        input_names: list,
        output_names: list,
        dynamic_axes: dict,
        check_inputs: list,
        external_data: bool | None = None,
        fp16: bool = False,
        lengths: list | None = None,
        graph_pass=None,
    ) -> None:
        """Exports `module` to out_dir/<name>.onnx and records its manifest entry.

        `dynamic_axes` maps tensor name -> {axis: symbolic name}; give outputs too
        so the manifest shapes carry the contract's names. `check_inputs` is a list
        of input tuples (at least two lengths) on which torch and onnxruntime must
        agree (max relative error per output <= 1e-4 in fp32). `external_data`:
        None decides by size (> 8 MiB of initializers). `fp16=True` marks the
        component as eligible for fp16 weights; it is converted only when the
        bundle's precision is fp16. `lengths` is recorded in the manifest
        (default: the first dynamic dimension of each check tuple). `graph_pass(model)` rewrites
        the exported graph before it is saved (graph_passes.py); the self-check runs on the
        rewritten graph.
        """
        if len(check_inputs) < 2:
            raise ValueError(f"{name}: self-check needs >= 2 input tuples (lengths)")
        module = module.eval()
        path = self.out_dir / f"{name}.onnx"
        with timed(f"export {name}"):
            tmp = Path(tempfile.mkdtemp(prefix=f"cbx-{name}-"))
            try:
                tmp_path = tmp / f"{name}.onnx"
                torch.onnx.export(
                    module,
                    tuple(example_inputs),
                    str(tmp_path),
                    input_names=list(input_names),
                    output_names=list(output_names),
                    dynamic_axes=dynamic_axes,
                    opset_version=OPSET,
                    do_constant_folding=True,
                    export_params=True,
                    keep_initializers_as_inputs=False,
                    dynamo=False,
                )
                model = onnx.load(str(tmp_path), load_external_data=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _strip_nondeterminism(model)
            if graph_pass is not None:
                log(f"{name}: graph passes {graph_pass(model)}")
            assert_no_random_ops(model, name)
            if external_data is None:
                external_data = _initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
            files = save_onnx(model, path, external_data)

        err32, out_shapes = self._self_check(name, module, path, check_inputs, input_names)
        precision = "fp32"
        check = {"max_rel_error": err32}
        if fp16 and self.precision == "fp16":
            with timed(f"fp16 conversion {name}"):
                del model  # saving with external data emptied its initializers: reload them
                model16 = convert_fp16(onnx.load(str(path), load_external_data=True))
                assert_no_random_ops(model16, name)
                files = save_onnx(model16, path, external_data)
                del model16
            err16, _ = self._self_check(name, module, path, check_inputs, input_names, tol=None)
            precision = "fp16"
            check = {"max_rel_error": err16, "max_rel_error_fp32": err32, "fp16_bound": FP16_TOLERANCE}
            if err16 > FP16_TOLERANCE:
                log(f"WARNING {name}: fp16 error {err16:.3g} above the stated bound {FP16_TOLERANCE}")
        else:
            del model

        if lengths is None:
            lengths = [_first_dynamic_len(inp, input_names, dynamic_axes) for inp in check_inputs]
        check["lengths"] = lengths

        model = onnx.load(str(path), load_external_data=False)
        inputs = [value_info_entry(v, dynamic_axes.get(v.name)) for v in model.graph.input]
        outputs = [value_info_entry(v, dynamic_axes.get(v.name), [shapes[k] for shapes in out_shapes])
                   for k, v in enumerate(model.graph.output)]
        pin_output_dims(path, model, outputs)
        self.components[name] = {
            "files": [file_entry(p, self.out_dir) for p in files],
            "precision": precision,
            "opset": OPSET,
            "inputs": inputs,
            "outputs": outputs,
            "self_check": check,
        }
        mb = sum(f["bytes"] for f in self.components[name]["files"]) / 1e6
        log(f"{name}: {mb:.2f} MB, {precision}, max rel error {check['max_rel_error']:.3g} at lengths {lengths}")

    def _self_check(self, name, module, path, check_inputs, input_names, tol=FP32_TOLERANCE) -> float:
        sess = ort_session(path, self.threads)
        ort_inputs = [i.name for i in sess.get_inputs()]
        ort_types = {i.name: i.type for i in sess.get_inputs()}
        worst = 0.0
        out_shapes = []
        for inp in check_inputs:
            ref = [_to_numpy(t) for t in _flatten(module(*inp))]
            feed = {}
            for n, x in zip(input_names, inp):
                if n in ort_inputs:  # inputs the exporter found unused are dropped
                    feed[n] = _to_numpy(x)
                    if ort_types[n] == "tensor(float16)":  # an fp16 graph's KV cache
                        feed[n] = feed[n].astype(np.float16)
            got = [g.astype(np.float32) if g.dtype == np.float16 else g for g in sess.run(None, feed)]
            out_shapes.append([tuple(int(n) for n in np.shape(r)) for r in ref])
            if len(got) != len(ref):
                raise RuntimeError(f"{name}: onnxruntime returned {len(got)} outputs, torch {len(ref)}")
            errs = [rel_error(r, g) for r, g in zip(ref, got)]
            e = max(errs)
            shapes = [f"{n}{list(np.shape(x))}" for n, x in feed.items()]
            if len(shapes) > 4:
                shapes = shapes[:2] + [f"... ({len(shapes) - 2} more)"]
            log(f"  self-check {name} {', '.join(shapes)}: max rel error {e:.3g}")
            worst = max(worst, e)
        del sess
        if tol is not None and not worst <= tol:
            raise RuntimeError(f"component {name}: onnxruntime differs from torch, rel error {worst:.3g} > {tol}")
        return float(worst), out_shapes

    def add_golden(self, name: str, array, note: str) -> None:
        """Records a golden tensor (written only when goldens are wanted)."""
        if not self.want_goldens:
            return
        if name in self.goldens:
            raise ValueError(f"golden {name} recorded twice")
        a = _to_numpy(array)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        self.goldens[name] = np.ascontiguousarray(a)
        self.golden_notes[name] = note


def _first_dynamic_len(inp: tuple, input_names: list, dynamic_axes: dict):
    for n, x in zip(input_names, inp):
        axes = dynamic_axes.get(n) or {}
        for ax in sorted(axes):
            if ax == 0 and len(axes) > 1:
                continue  # batch axis; the length is the next one
            return int(np.shape(_to_numpy(x))[ax])
    return None


def _strip_nondeterminism(model: onnx.ModelProto) -> None:
    """Drops doc strings (they can hold source paths) so files are byte-stable."""
    model.doc_string = ""
    model.graph.doc_string = ""
    for n in model.graph.node:
        n.doc_string = ""


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


if __name__ == "__main__":  # tiny smoke test of the export path
    ctx = ExportContext(Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()), "tiny", 0, None, "fp32")
    lin = seeded_init(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16)), 0)
    ctx.export(
        "smoke",
        lin,
        (torch.randn(1, 5, 8),),
        ["x"],
        ["y"],
        {"x": {1: "len"}, "y": {1: "len"}},
        [(torch.randn(1, 3, 8),), (torch.randn(1, 11, 8),)],
    )
    print(ctx.components["smoke"])
