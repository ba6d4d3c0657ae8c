#!/bin/bash
# The issue-10 figures on the AVX-512 VNNI machine kind (2026-12-03), one session, in the
# order they ran. Bundles: full = `export/export_bundle.py --config full --seed 0 --ref-wav
# onnx/tiny/goldens/ref.wav` at this commit; full-t3int4-flowint8 and full-t3int8-flowint8 =
# `export/quantize_bundle.py --bundle full --components t3_decoder=int4|int8,flow_estimator=int8`.
# Load A/B: BIN_BEFORE = this engine (sessions created one after another at load), BIN = the
# same engine with an experimental parallel creation of the resident sessions (measured, not
# adopted: README.md here). The Python steps first ran at the start of the session with a
# wrong working folder and failed at once (session.log); they ran again after the PyTorch
# baseline, which is the order below.
set -u
cd "$(dirname "$0")/../../.."
PY=${PY:-$HOME/.cache/chatterbox-ort/export-venv/bin/python}
BIN=${BIN:-target/release/chatterbox-ort}
BIN_BEFORE=${BIN_BEFORE:-target/release/chatterbox-ort}
B=${BUNDLES:-$HOME/.cache/chatterbox-ort/bundles}
OUT=${OUT:-/tmp/vnni}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/session.log"; }
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
log "engine fp32 resident, swap, T3 stage alone"
$BIN bench --bundle "$B/full" --modes resident,swap,largest-stage --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
  --json "$OUT/bench-fp32.json" --markdown "$OUT/bench-fp32.md" > "$OUT/bench-fp32.log" 2>&1
log "engine int4 T3 + int8 flow resident"
$BIN bench --bundle "$B/full-t3int4-flowint8" --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
  --json "$OUT/bench-t3int4-flowint8.json" --markdown "$OUT/bench-t3int4-flowint8.md" > "$OUT/bench-q4.log" 2>&1
log "engine int8 T3 + int8 flow resident"
$BIN bench --bundle "$B/full-t3int8-flowint8" --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
  --json "$OUT/bench-t3int8-flowint8.json" --markdown "$OUT/bench-t3int8-flowint8.md" > "$OUT/bench-q8.log" 2>&1
log "PyTorch reference resident"
$PY benches/baseline_torch.py --bundle "$B/full" --modes torch-resident --runs 3 --tokens 100 --threads 2 \
  --warmup-tokens 20 --out "$OUT/torch.json" > "$OUT/torch.log" 2>&1
log "estimator call fp32 vs int8"
$PY benches/s3gen_cost.py --bundle "$B/full" --bundle "$B/full-t3int4-flowint8" --batch 2 --frames 700 \
  --calls 3 --rounds 3 --threads 2 --out "$OUT/cost.json" > "$OUT/cost.log" 2>&1
log "T3 step fp32 / int8 / int4 at 50 and 1000 positions"
$PY benches/t3_step_cost.py --bundle "$B/full" --bundle "$B/full-t3int8-flowint8" --bundle "$B/full-t3int4-flowint8" \
  --positions 50,1000,50,1000 --steps 30 --threads 2 --batch 2 --out "$OUT/t3-step.json" > "$OUT/t3-step.log" 2>&1
log "load A/B: resident engine, sequential (before) / parallel (after) session creation, 10 tokens, 1 run per process, alternating"
n=0
for bin in "$BIN_BEFORE" "$BIN" "$BIN_BEFORE" "$BIN" "$BIN_BEFORE" "$BIN" "$BIN_BEFORE" "$BIN"; do
  n=$((n + 1))
  tag=$([ "$bin" = "$BIN_BEFORE" ] && echo before || echo after)
  $bin bench --bundle "$B/full" --modes resident --runs 1 --tokens 10 --threads 2 --warmup-tokens 2 \
    --json "$OUT/load-$n-$tag.json" > "$OUT/load-$n-$tag.log" 2>&1
done
log "profile int8 estimator"
$PY benches/s3gen_cost.py --bundle "$B/full-t3int4-flowint8" --batch 2 --frames 700 --calls 3 --rounds 1 --threads 2 \
  --profile "$OUT/prof-int8" --top 12 > "$OUT/profile-int8.log" 2>&1
$PY benches/s3gen_cost.py --bundle "$B/full" --batch 2 --frames 700 --calls 3 --rounds 1 --threads 2 \
  --profile "$OUT/prof-fp32" --top 12 > "$OUT/profile-fp32.log" 2>&1
log "profiles end"
