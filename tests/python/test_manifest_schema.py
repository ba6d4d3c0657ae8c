"""Every committed bundle manifest (onnx/**/manifest.json: the tiny bundles and the tiny
quantized / fp16 graphs) is valid against export/manifest.schema.json (JSON Schema draft
2020-12, the `jsonschema` package), and the schema refuses what each kind of bundle must
carry: a wrong schema version, a Turbo manifest without its Turbo keys, a quantized flow
estimator without its errors, a quantized decoder without its quantization record. (The Rust
tests check what the engine reads from the same manifests; the schema check lives here so
that the Rust test build does not compile a JSON Schema validator.)"""

import copy
import json

import jsonschema
import pytest

from conftest import REPO

SCHEMA = json.loads((REPO / "export" / "manifest.schema.json").read_text())
MANIFESTS = sorted((REPO / "onnx").glob("**/manifest.json"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def load(rel: str) -> dict:
    return json.loads((REPO / "onnx" / rel / "manifest.json").read_text())


def errors(manifest: dict) -> list:
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(manifest)]


def test_schema_is_a_valid_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_committed_bundle_is_found():
    found = {str(p.parent.relative_to(REPO / "onnx")) for p in MANIFESTS}
    expected = {"tiny", "tiny-turbo", "tiny-multilingual"} | {
        f"tiny-quant/{f}-{p}" for f in ("original", "turbo") for p in ("int8", "int4", "flow-int8", "fp16")
    }
    assert expected <= found, sorted(expected - found)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.parent.relative_to(REPO / "onnx")))
def test_manifest_is_valid_and_a_wrong_version_is_refused(path):
    manifest = json.loads(path.read_text())
    assert errors(manifest) == []
    broken = dict(manifest, schema_version=2)
    assert errors(broken)


def test_turbo_without_its_keys_is_refused():
    turbo = load("tiny-turbo")
    assert errors(turbo) == []
    del turbo["config"]["s3gen"]["meanflow"]
    del turbo["config"]["voice"]
    assert errors(turbo)


@pytest.mark.parametrize("family", ["original", "turbo"])
def test_quantized_flow_without_its_errors_is_refused(family):
    m = load(f"tiny-quant/{family}-flow-int8")
    broken = copy.deepcopy(m)
    del broken["components"]["flow_estimator"]["self_check"]["mel_rel_error"]
    assert errors(m) == [] and errors(broken)


@pytest.mark.parametrize("case", ["original-int8", "original-int4", "turbo-int8", "turbo-int4"])
def test_quantized_decoder_without_its_record_is_refused(case):
    m = load(f"tiny-quant/{case}")
    broken = copy.deepcopy(m)
    del broken["components"]["t3_decoder"]["quantization"]
    assert errors(m) == [] and errors(broken)
