#!/bin/bash
# In-place KV cache session: T3 step cost against cache length (new graph vs the previous
# concat graph, same weights), then whole-synthesis Turbo and original engine runs against the
# PyTorch reference, alternated (engine, torch, torch, engine) so drift hits both alike.
# Bundles: full random seed 0 exported by this commit (*-kv) and by the commit before (old).
set -u
cd /work/main
PY=~/.cache/chatterbox-ort/export-venv/bin/python
OUT=${OUT:-/tmp/meas3}; mkdir -p $OUT
NEW=target/release/chatterbox-ort
log() { echo "[$(date +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
log "step cost turbo"
$PY benches/t3_step_cost.py --bundle /tmp/full-turbo-kv --bundle /tmp/full-turbo --bundle /tmp/full-turbo-kv --bundle /tmp/full-turbo --positions 50,1000 --steps 40 --threads 2 --out $OUT/step-turbo.json > $OUT/step-turbo.log 2>&1
log "step cost original (batch 2)"
$PY benches/t3_step_cost.py --bundle /tmp/full-bundle-kv --bundle /tmp/full-bundle --bundle /tmp/full-bundle-kv --bundle /tmp/full-bundle --positions 50,1000 --steps 40 --threads 2 --batch 2 --out $OUT/step-original.json > $OUT/step-original.log 2>&1
log "engine turbo (1)"
$NEW bench --bundle /tmp/full-turbo-kv --modes resident --runs 3 --tokens 100 --threads 2 --json $OUT/turbo-1.json --markdown $OUT/turbo-1.md > $OUT/turbo-1.log 2>&1
log "torch turbo (1)"
$PY benches/baseline_torch.py --bundle /tmp/full-turbo --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-turbo-1.json > $OUT/torch-turbo-1.log 2>&1
log "torch turbo (2)"
$PY benches/baseline_torch.py --bundle /tmp/full-turbo --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-turbo-2.json > $OUT/torch-turbo-2.log 2>&1
log "engine turbo (2)"
$NEW bench --bundle /tmp/full-turbo-kv --modes resident --runs 3 --tokens 100 --threads 2 --baseline $OUT/torch-turbo-2.json --json $OUT/turbo-2.json --markdown $OUT/turbo-2.md > $OUT/turbo-2.log 2>&1
log "engine original"
$NEW bench --bundle /tmp/full-bundle-kv --modes resident --runs 3 --tokens 100 --threads 2 --json $OUT/original-1.json --markdown $OUT/original-1.md > $OUT/original-1.log 2>&1
log "torch original"
$PY benches/baseline_torch.py --bundle /tmp/full-bundle --modes torch-resident --runs 3 --tokens 100 --threads 2 --out $OUT/torch-original.json > $OUT/torch-original.log 2>&1
log "session end"
