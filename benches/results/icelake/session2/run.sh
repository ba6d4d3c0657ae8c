#!/bin/bash
# Second session (same machine, after the fresh-clone CI run and the README `say` build): Turbo's
# fastest configuration, int8 T3 + int8 flow (turbo-full-t3int8-flowint8 =
# export/quantize_bundle.py --bundle turbo-full --components t3_decoder=int8,flow_estimator=int8),
# against the reference and the fp32 engine, A B C C B A so drift hits all alike.
set -u
cd "$(dirname "$0")/../../../.."
PY=${PY:-$HOME/.cache/chatterbox-ort/export-venv/bin/python}
BIN=${BIN:-target/release/chatterbox-ort}
B=${BUNDLES:-$HOME/.cache/chatterbox-ort/bundles}
OUT=${OUT:-/tmp/icelake2}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/session.log"; }
bench() {  # tag bundle
  $BIN bench --bundle "$2" --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 \
    --json "$OUT/bench-$1.json" --markdown "$OUT/bench-$1.md" > "$OUT/bench-$1.log" 2>&1 || log "FAILED bench $1"
}
torch_bench() {  # tag
  $PY benches/baseline_torch.py --bundle "$B/turbo-full" --modes torch-resident --runs 3 --tokens 100 --threads 2 \
    --warmup-tokens 20 --out "$OUT/torch-$1.json" > "$OUT/torch-$1.log" 2>&1 || log "FAILED torch $1"
}
log "session start; other processes: $(ps -eo pcpu= | awk '{s+=$1} END {print s}') % CPU"
log "PyTorch Turbo (A)";               torch_bench A
log "engine Turbo fp32 (A)";           bench fp32-A "$B/turbo-full"
log "engine Turbo int8 T3 + flow (A)"; bench q8-A "$B/turbo-full-t3int8-flowint8"
log "engine Turbo int8 T3 + flow (B)"; bench q8-B "$B/turbo-full-t3int8-flowint8"
log "engine Turbo fp32 (B)";           bench fp32-B "$B/turbo-full"
log "PyTorch Turbo (B)";               torch_bench B
log "session end"
