#!/bin/bash
# Flow quantization session, part 2: whole synthesis (100 forced tokens, 2 threads, resident)
# with the fp32 bundle and with its int8 flow estimator, alternated fp32, int8, int8, fp32 so
# drift hits both alike, then the PyTorch reference (per-stage times: its `s3gen` is
# S3Gen.flow_inference, as the engine's). Original model, then Turbo.
# Run from the repository root after quantizing with the defaults:
#   export/quantize_bundle.py --bundle SRC --out /tmp/flowq-FAMILY-int8 --components flow_estimator=int8
set -u
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=${OUT:-benches/results/flow-quant}; mkdir -p $OUT
BIN=${BIN:-/tmp/flowq-bin/chatterbox-ort}  # a private copy of this commit's release build (the shared target dir is rebuilt by others)
log() { echo "[$(date -u +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
bench() {  # name bundle
  log "engine $1 ($2)"
  $BIN bench --bundle $2 --modes resident --runs 3 --tokens 100 --threads 2 --json $OUT/$1.json --markdown $OUT/$1.md > $OUT/$1.log 2>&1
}
log "bench start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for fam in ${FAMILIES:-original turbo}; do
  src=/tmp/full-bundle-kv; [ $fam = turbo ] && src=/tmp/full-turbo-kv
  bench $fam-fp32-1 $src
  bench $fam-int8-1 /tmp/flowq-$fam-int8
  bench $fam-int8-2 /tmp/flowq-$fam-int8
  bench $fam-fp32-2 $src
  log "torch $fam"
  $PY benches/baseline_torch.py --bundle $src --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-$fam.json > $OUT/torch-$fam.log 2>&1
done
log "bench end"
