#!/usr/bin/env bash
# Tests of the Python package: scripts/python-env.sh (venv, build, install), the CLI the tests
# compare against (`cargo build --release`; nothing to do when it is built), then pytest on
# tests/python. Extra arguments go to pytest (e.g. `-k stream -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/python-env.sh
cargo build --release --quiet --bin chatterbox-ort
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
CHATTERBOX_ORT_CLI=$target_dir/release/chatterbox-ort \
    exec target/python-venv/bin/python -m pytest tests/python "$@"
