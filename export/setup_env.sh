#!/usr/bin/env bash
# Creates the export environment from nothing: a Python venv outside the repo
# (torch 2.6 brings ~3 GB of CUDA wheels), with chatterbox-tts==0.1.7 and the
# pinned export dependencies. Usage: bash export/setup_env.sh [VENV_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${CHATTERBOX_EXPORT_VENV:-$HOME/.cache/chatterbox-ort/export-venv}}
python3 -m venv "$venv"
"$venv/bin/pip" install --upgrade pip
"$venv/bin/pip" install -r "$here/requirements.txt"
"$venv/bin/pip" install --no-deps chatterbox-tts==0.1.7
"$venv/bin/python" -c "import chatterbox.tts, chatterbox.tts_turbo, pyloudnorm, perth, s3tokenizer, onnxruntime; print('export env ready:', '$venv')"
