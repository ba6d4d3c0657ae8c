#!/usr/bin/env bash
# Tests of the Python package: scripts/python-env.sh (venv, build, install), then pytest on
# tests/python. Extra arguments go to pytest (e.g. `-k stream -x`).
#
# The tests compare the package's audio with the CLI's, so the CLI must be built from the
# same sources: it is built here when it is missing or older than the sources. A CLI that
# `cargo test --release` built is used as it is (building it again with `cargo build` would
# compile the library anew: `cargo test` unifies the dev-dependencies' features).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
cli=$target_dir/release/chatterbox-ort
if [ ! -x "$cli" ] || [ -n "$(find src build.rs Cargo.toml Cargo.lock -newer "$cli" -print -quit)" ]; then
    echo "test-python: building the CLI the tests compare with"
    cargo build --release --quiet --bin chatterbox-ort
fi
scripts/python-env.sh
CHATTERBOX_ORT_CLI=$cli exec target/python-venv/bin/python -m pytest tests/python "$@"
