#!/usr/bin/env bash
# The residency benchmark on an NVIDIA machine, in one go:
#
#   benches/cuda/run_cuda_bench.sh OUTDIR
#
# 1. records the GPU and driver (nvidia-smi);
# 2. puts the CUDA 13 / cuDNN 9 libraries of a PyTorch venv's `nvidia-*` wheels on
#    LD_LIBRARY_PATH (the onnxruntime-gpu 1.31.1 CUDA provider needs libcublas(Lt) 13,
#    libcudart 13, libcurand 10, libcufft, cuDNN 9);
# 3. builds chatterbox-ort in its CUDA flavour (CHATTERBOX_ORT_FLAVOR=cuda, see build.rs);
# 4. exports the full-size random bundle if it is not there yet;
# 5. runs the PyTorch baseline on the GPU (torch-resident, torch-offload with .to() moves);
# 6. runs `chatterbox-ort bench --provider cuda` over every mode, merging the baseline.
#
# Everything lands in OUTDIR: bench-cuda.{json,md,png}, baseline-torch-cuda.json,
# gpu.txt and one log per step. Each step has its own time limit so that the whole
# run stays within about 10 minutes when the bundle already exists (an export of the
# full bundle alone takes several minutes and ~10 GB RAM).
#
# UNTESTED on a GPU: written on a CPU-only machine (see benches/README.md).
#
# Environment (all optional):
#   TORCH_VENV     PyTorch venv with the nvidia-* wheels   (default /opt/torch/.venv)
#   EXPORT_PY      Python with chatterbox-tts for export/baseline
#                  (default ~/.cache/chatterbox-ort/export-venv/bin/python, else $TORCH_VENV/bin/python)
#   BUNDLE         full-size bundle folder                 (default ~/.cache/chatterbox-ort/bundles/full)
#   ORT_DYLIB_PATH an onnxruntime-gpu libonnxruntime.so to use instead of build.rs's
#   TOKENS RUNS MODES  benchmark size (defaults 100, 3, all modes)
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUT=$(realpath -m "$1")
mkdir -p "$OUT"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"

TORCH_VENV=${TORCH_VENV:-/opt/torch/.venv}
BUNDLE=${BUNDLE:-$HOME/.cache/chatterbox-ort/bundles/full}
TOKENS=${TOKENS:-100}
RUNS=${RUNS:-3}
MODES=${MODES:-resident,swap,swap-prefetch,cpu,idle=30,budget=2GiB,largest-stage,swap-cost}
if [[ -z "${EXPORT_PY:-}" ]]; then
    if [[ -x "$HOME/.cache/chatterbox-ort/export-venv/bin/python" ]]; then
        EXPORT_PY=$HOME/.cache/chatterbox-ort/export-venv/bin/python
    else
        EXPORT_PY=$TORCH_VENV/bin/python
    fi
fi
START=$(date +%s)
step() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/steps.log" >&2; }

# 1. The machine.
step "GPU"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"
    nvidia-smi | head -n 4 || true
    grep -m1 "model name" /proc/cpuinfo || true
    nproc
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt" >&2

# 2. CUDA libraries from the PyTorch venv's nvidia wheels.
libdirs=""
for d in "$TORCH_VENV"/lib/python3*/site-packages/nvidia/*/lib; do
    [[ -d "$d" ]] && libdirs="$libdirs:$d"
done
if [[ -z "$libdirs" ]]; then
    step "WARNING: no nvidia/*/lib under $TORCH_VENV; relying on the system's CUDA libraries"
fi
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
step "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# 3. Build (CUDA flavour of build.rs: onnxruntime-gpu 1.31.1 beside the binary).
step "cargo build --release (CHATTERBOX_ORT_FLAVOR=cuda)"
CHATTERBOX_ORT_FLAVOR=cuda timeout 300 cargo build --release --bin chatterbox-ort >"$OUT/build.log" 2>&1 || {
    tail -n 30 "$OUT/build.log" >&2
    step "build failed"
    exit 1
}
BIN=$REPO/target/release/chatterbox-ort
"$BIN" info --bundle "$REPO/onnx/tiny" --provider cuda >"$OUT/info-tiny.txt" 2>&1 || true

# 4. The full-size random bundle.
if [[ ! -f "$BUNDLE/manifest.json" ]]; then
    step "exporting the full-size random bundle to $BUNDLE (several minutes)"
    mkdir -p "$(dirname "$BUNDLE")"
    timeout 900 "$EXPORT_PY" export/export_bundle.py --config full --seed 0 --out "$BUNDLE" >"$OUT/export.log" 2>&1 || {
        tail -n 30 "$OUT/export.log" >&2
        step "export failed"
        exit 1
    }
fi

# 5. The PyTorch baseline on the GPU (each mode in its own process).
step "PyTorch baseline (cuda)"
BASELINE_ARGS=()
if timeout 240 "$EXPORT_PY" benches/baseline_torch.py --bundle "$BUNDLE" --device cuda \
        --runs "$RUNS" --tokens "$TOKENS" --out "$OUT/baseline-torch-cuda.json" >"$OUT/baseline.log" 2>&1; then
    BASELINE_ARGS=(--baseline "$OUT/baseline-torch-cuda.json")
else
    tail -n 30 "$OUT/baseline.log" >&2
    step "baseline failed or timed out; the report will have no PyTorch points"
fi

# 6. chatterbox-ort, every mode in a fresh process.
step "chatterbox-ort bench --provider cuda --modes $MODES"
timeout 420 "$BIN" bench --bundle "$BUNDLE" --provider cuda --modes "$MODES" \
    --runs "$RUNS" --tokens "$TOKENS" --mode-timeout-s 150 "${BASELINE_ARGS[@]}" \
    --json "$OUT/bench-cuda.json" --markdown "$OUT/bench-cuda.md" --plot "$OUT/bench-cuda.png" \
    2>"$OUT/bench.log" || {
    tail -n 40 "$OUT/bench.log" >&2
    step "bench failed"
    exit 1
}
step "done: $OUT"
cat "$OUT/bench-cuda.md"
