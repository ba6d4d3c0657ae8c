"""ONNX Runtime helpers shared by the exporter and the torch-free tools (quantize_bundle.py)."""

from __future__ import annotations

from pathlib import Path


def ort_session(path: Path, threads: int = 2):
    """A CPU session of `path` with `threads` intra-op threads, warnings silenced."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
