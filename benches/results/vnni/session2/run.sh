#!/bin/bash
# Second session of 2026-12-03 (04:37-04:47 UTC), same machine and bundles as ../run.sh. The
# mask-free estimator graphs are the bundles' flow_estimator.onnx with the key padding mask
# input removed from every MultiHeadAttention node (../../fused-attention/strip_mask.py),
# with the external data hard-linked beside them (ONNX Runtime refuses a symlink that leaves
# the model's folder: the first attempt of the cost step failed on that, session.log).
set -u
cd "$(dirname "$0")/../../../.."
PY=${PY:-$HOME/.cache/chatterbox-ort/export-venv/bin/python}
BIN=${BIN:-target/release/chatterbox-ort}
B=${BUNDLES:-$HOME/.cache/chatterbox-ort/bundles}
OUT=${OUT:-/tmp/vnni2}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/session.log"; }
for p in "full /tmp/full-nomask" "full-t3int8-flowint8 /tmp/q8-nomask"; do
  set -- $p
  mkdir -p "$2"
  $PY benches/results/fused-attention/strip_mask.py "$B/$1" "$2"
  rm -f "$2/flow_estimator.onnx.data"
  ln "$B/$1/flow_estimator.onnx.data" "$2/flow_estimator.onnx.data"
done
log "session 2 start"
log "engine fp32: swap, swap-prefetch, resident"
$BIN bench --bundle "$B/full" --modes swap,swap-prefetch,resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
  --json "$OUT/bench-swap.json" --markdown "$OUT/bench-swap.md" > "$OUT/bench-swap.log" 2>&1
log "estimator call: fp32, fp32 without key padding mask, int8, int8 without mask"
$PY benches/s3gen_cost.py --bundle "$B/full" --bundle /tmp/full-nomask --bundle "$B/full-t3int8-flowint8" --bundle /tmp/q8-nomask \
  --batch 2 --frames 700 --calls 3 --rounds 3 --threads 2 --out "$OUT/cost-nomask.json" > "$OUT/cost-nomask.log" 2>&1
log "session 2 end"
