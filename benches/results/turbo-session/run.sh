#!/bin/bash
# One benchmark session: Turbo and original, engine and PyTorch reference, full-size random
# bundles (seed 0), CPU, 2 threads, 100 tokens, 3 measured runs each, modes in fresh processes.
set -u
cd /work/main
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=/tmp/meas
log() { echo "[$(date +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
log "torch turbo"
$PY benches/baseline_torch.py --bundle /tmp/full-turbo --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-turbo.json > $OUT/torch-turbo.log 2>&1
log "engine turbo"
target/release/chatterbox-ort bench --bundle /tmp/full-turbo --modes resident,swap --runs 3 --tokens 100 --threads 2 --baseline $OUT/torch-turbo.json --json $OUT/turbo.json --markdown $OUT/turbo.md > $OUT/turbo.log 2>&1
log "engine original"
target/release/chatterbox-ort bench --bundle /tmp/full-bundle --modes resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 10 --warmup-flow-steps 1 --json $OUT/original.json --markdown $OUT/original.md > $OUT/original.log 2>&1
log "torch original"
$PY benches/baseline_torch.py --bundle /tmp/full-bundle --modes torch-resident --runs 3 --tokens 100 --threads 2 --warmup-tokens 10 --warmup-flow-steps 1 --out $OUT/torch-original.json > $OUT/torch-original.log 2>&1
log "merge"
target/release/chatterbox-ort bench --from-json $OUT/original.json --baseline $OUT/torch-original.json --json $OUT/original-merged.json --markdown $OUT/original-merged.md > /dev/null 2>&1
log "session end"
