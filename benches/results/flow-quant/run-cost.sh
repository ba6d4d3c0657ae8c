#!/bin/bash
# Flow quantization session, part 2 (timing, quiet machine): ONNX Runtime profiles of the fp32
# flow_estimator and HiFT and of the quantized estimators, then the per-call time of every
# candidate side by side (interleaved rounds). Run after run-quantize.sh, from the repository root.
set -u
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=${OUT:-benches/results/flow-quant}; mkdir -p $OUT
ORIG=/tmp/full-bundle-kv; TURBO=/tmp/full-turbo-kv
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
prof() {  # name bundle component batch frames
  $PY benches/s3gen_cost.py --bundle $2 --component $3 --batch $4 --frames $5 --profile /tmp/flowq-prof --calls 3 --top 15 --out $OUT/profile-$1.json > $OUT/profile-$1.md 2>&1
}
log "cost start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
log "profiles (original, batch 2, 700 frames; hift 200 frames)"
prof flow-original-fp32 $ORIG flow_estimator 2 700
prof hift $ORIG hift 1 200
prof flow-original-nbits8 /tmp/flowq-original-nbits8 flow_estimator 2 700
prof flow-original-dyn8 /tmp/flowq-original-dyn8 flow_estimator 2 700
log "per-call time, original (batch 2, 700 frames)"
$PY benches/s3gen_cost.py --bundle $ORIG --bundle /tmp/flowq-original-nbits8 --bundle /tmp/flowq-original-dyn8 --bundle /tmp/flowq-original-nbits8-l0 --bundle /tmp/flowq-original-nbits4 --batch 2 --frames 700 --calls 3 --rounds 3 --out $OUT/cost-original.json > $OUT/cost-original.md 2>&1
log "per-call time, turbo (batch 1, 706 frames)"
$PY benches/s3gen_cost.py --bundle $TURBO --bundle /tmp/flowq-turbo-nbits8 --bundle /tmp/flowq-turbo-dyn8 --batch 1 --frames 706 --calls 3 --rounds 3 --out $OUT/cost-turbo.json > $OUT/cost-turbo.md 2>&1
log "per-call time, original: fp32 vs dynamic per tensor vs per column"
$PY benches/s3gen_cost.py --bundle $ORIG --bundle /tmp/flowq-original-dyn8 --bundle /tmp/flowq-original-dyn8pc --batch 2 --frames 700 --calls 3 --rounds 3 --out $OUT/cost-original-dynamic.json > $OUT/cost-original-dynamic.md 2>&1
log "cost end"
