#!/bin/bash
# Attribution: the engine before the in-place cache (commit 596213a, its concat bundle) against
# this commit (in-place bundle), Turbo, alternated old, new, new, old; same weights, 100 tokens.
set -u
cd /work/main
OUT=${OUT:-/tmp/meas4}; mkdir -p $OUT
OLD=${OLD:-/tmp/oldtarget/release/chatterbox-ort}
NEW=target/release/chatterbox-ort
log() { echo "[$(date +%T)] $*  | load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT/session.log; }
log "session start; $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo)"
run() { log "$1"; $2 bench --bundle $3 --modes resident --runs 3 --tokens 100 --threads 2 --json $OUT/$1.json --markdown $OUT/$1.md > $OUT/$1.log 2>&1; }
run old-1 $OLD /tmp/full-turbo
run new-1 $NEW /tmp/full-turbo-kv
run new-2 $NEW /tmp/full-turbo-kv
run old-2 $OLD /tmp/full-turbo
log "session end"
