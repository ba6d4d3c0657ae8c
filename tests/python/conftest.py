"""Fixtures of the Python package's tests: engines on the committed tiny bundles (one per
bundle for the whole session) and the CLI the results are compared with."""

import os
import shutil
from pathlib import Path

import pytest

import chatterbox_ort as cbx

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "onnx" / "tiny"
TINY_TURBO = REPO / "onnx" / "tiny-turbo"
TINY_MULTILINGUAL = REPO / "onnx" / "tiny-multilingual"
REF_WAV = TINY / "goldens" / "ref.wav"


@pytest.fixture(scope="session")
def engine() -> cbx.Engine:
    return cbx.Engine(TINY)


@pytest.fixture(scope="session")
def turbo() -> cbx.Engine:
    return cbx.Engine(TINY_TURBO)


@pytest.fixture(scope="session")
def multilingual() -> cbx.Engine:
    return cbx.Engine(TINY_MULTILINGUAL)


@pytest.fixture(scope="session")
def cli() -> str:
    """The `chatterbox-ort` binary: CHATTERBOX_ORT_CLI (scripts/test-python.sh sets it), else
    target/release/ of CARGO_TARGET_DIR or of the repository. Missing is a failure."""
    candidates = [os.environ.get("CHATTERBOX_ORT_CLI", "")]
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        candidates.append(str(Path(target, "release", "chatterbox-ort")))
    candidates.append(str(REPO / "target" / "release" / "chatterbox-ort"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    found = shutil.which("chatterbox-ort")
    if found:
        return found
    pytest.fail(
        "the chatterbox-ort CLI is not built (cargo build --release); "
        "scripts/test-python.sh builds it and sets CHATTERBOX_ORT_CLI"
    )
