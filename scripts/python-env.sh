#!/usr/bin/env bash
# The Python package in a virtual environment, for its tests and for trying it out:
#
#   scripts/python-env.sh
#   target/python-venv/bin/python -c 'import chatterbox_ort; print(chatterbox_ort.__version__)'
#
# Creates target/python-venv when it is missing or broken (installing python3-venv first
# through scripts/install-test-deps.sh where the system Python lacks it), installs the
# pinned requirements of python/requirements-dev.txt when they changed since the last run,
# then builds the extension (release) and installs the package into the venv with
# `maturin develop`: an editable install of python/chatterbox_ort, so a change to its .py
# files needs no rebuild. With nothing changed the script takes a few seconds.
# PYTHON_ENV_DEPS_ONLY=1 stops after the requirements (no build).
#
# The build uses the cargo target folder (CARGO_TARGET_DIR, else target/), reusing the
# dependencies `cargo build`/`cargo test --release` compiled where their features agree
# (the bindings' proc-macros change some: serde, tokenizers and the engine are compiled
# once more). The engine library itself (a cdylib, so its files in target/release/deps/
# carry no hash) is rebuilt in place with the bindings' features, and the next root
# `cargo test --release` compiles it back: run the build after `cargo test` and after
# anything that loads target/release/deps/libchatterbox_ort.so (the C ABI tests), not
# beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/target/python-venv
requirements=python/requirements-dev.txt

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        scripts/install-test-deps.sh
    fi
    rm -rf "$venv"
    echo "python-env: creating $venv"
    python3 -m venv "$venv"
fi

stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "python-env: installing $requirements"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi

if [ "${PYTHON_ENV_DEPS_ONLY:-0}" = 1 ]; then
    # scripts/test.sh: the downloads early, beside the Rust build; the package later.
    exit 0
fi

echo "python-env: building and installing chatterbox_ort (maturin develop --release)"
VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH "$venv/bin/maturin" develop --release --quiet
"$venv/bin/python" -c 'import chatterbox_ort'
