#!/bin/bash
# export/graph_passes.py on the AVX-512 VNNI machine kind (2026-12-03), session 1, in the order
# the steps ran (bundles and binary: common.sh).
OUT=${OUT:-/tmp/estimator-passes}
. "$(dirname "$0")/common.sh"
log "one estimator call: fp32 before/after, int8 before/after (interleaved rounds)"
cost cost 3
log "engine fp32 after";            bench fp32 "$B/full"
log "engine int8 T3 + flow after";  bench t3int8-flowint8 "$B/full-t3int8-flowint8"
log "PyTorch reference resident";   torch_bench
log "engine fp32 before";           bench fp32-v0 "$B/full-v0"
log "engine int8 T3 + flow before"; bench t3int8-flowint8-v0 "$B/full-t3int8-flowint8-v0"
log "profiles after"
$PY benches/s3gen_cost.py --bundle "$B/full-t3int8-flowint8" --batch 2 --frames 700 --calls 3 --rounds 1 \
  --threads 2 --profile "$OUT/prof-int8" --top 14 > "$OUT/profile-int8.log" 2>&1
$PY benches/s3gen_cost.py --bundle "$B/full" --batch 2 --frames 700 --calls 3 --rounds 1 --threads 2 \
  --profile "$OUT/prof-fp32" --top 14 > "$OUT/profile-fp32.log" 2>&1
log "session end"
