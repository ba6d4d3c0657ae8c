#!/bin/bash
# Session 2: Turbo only, after the conditioning-prefix KV cache; engine and PyTorch reference
# alternated (A B B A) so drift hits both alike.
set -u
cd /work/main
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=/tmp/meas2; mkdir -p $OUT
log() { echo "[$(date +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
log "engine turbo (1)"
target/release/chatterbox-ort bench --bundle /tmp/full-turbo --modes resident --runs 3 --tokens 100 --threads 2 --json $OUT/turbo-1.json --markdown $OUT/turbo-1.md > $OUT/turbo-1.log 2>&1
log "torch turbo (1)"
$PY benches/baseline_torch.py --bundle /tmp/full-turbo --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-turbo-1.json > $OUT/torch-turbo-1.log 2>&1
log "torch turbo (2)"
$PY benches/baseline_torch.py --bundle /tmp/full-turbo --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-turbo-2.json > $OUT/torch-turbo-2.log 2>&1
log "engine turbo (2)"
target/release/chatterbox-ort bench --bundle /tmp/full-turbo --modes resident,swap --runs 3 --tokens 100 --threads 2 --baseline $OUT/torch-turbo-2.json --json $OUT/turbo-2.json --markdown $OUT/turbo-2.md > $OUT/turbo-2.log 2>&1
log "session end"
