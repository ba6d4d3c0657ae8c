#!/bin/bash
set -u
cd /work/main
PY=~/.cache/chatterbox-ort/export-venv/bin/python
BIN=/work/lead-target/release/chatterbox-ort
OUT=/tmp/bt
log() { echo "[$(date +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
log "turbo session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
log "estimator cost old vs fused"
$PY benches/s3gen_cost.py --bundle /tmp/turbo-old --bundle /tmp/turbo-mha --batch 1 --frames 706 --calls 3 --rounds 3 --threads 2 --out $OUT/cost-turbo.json > $OUT/cost-turbo.log 2>&1
log "engine turbo fused"
$BIN bench --bundle /tmp/turbo-mha --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 --json $OUT/turbo-fused.json --markdown $OUT/turbo-fused.md > $OUT/turbo-fused.log 2>&1
log "torch turbo"
$PY benches/baseline_torch.py --bundle /tmp/turbo-mha --modes torch-resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 --out $OUT/torch-turbo.json > $OUT/torch-turbo.log 2>&1
log "engine turbo decomposed"
$BIN bench --bundle /tmp/turbo-old --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 20 --json $OUT/turbo-decomposed.json --markdown $OUT/turbo-decomposed.md > $OUT/turbo-decomposed.log 2>&1
log "turbo session end"
