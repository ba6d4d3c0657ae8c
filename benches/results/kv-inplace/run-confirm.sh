#!/bin/bash
# A second Turbo engine-vs-reference session (engine, reference, reference, engine), to confirm
# the ratio of run.sh on another stretch of the shared host's time.
set -u
cd /work/main
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=${OUT:-/tmp/meas7}; mkdir -p $OUT
NEW=target/release/chatterbox-ort
log() { echo "[$(date +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
eng() { log "engine $1"; $NEW bench --bundle /tmp/full-turbo-kv --modes resident --runs 3 --tokens 100 --threads 2 --json $OUT/turbo-$1.json --markdown $OUT/turbo-$1.md > $OUT/turbo-$1.log 2>&1; }
ref() { log "torch $1"; $PY benches/baseline_torch.py --bundle /tmp/full-turbo --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-turbo-$1.json > $OUT/torch-turbo-$1.log 2>&1; }
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
eng 1; ref 1; ref 2; eng 2
log "session end"
